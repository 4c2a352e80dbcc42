// Parsing an example's command line with node:util parseArgs, every error
// one line that names the flag as typed: "did you mean --port?" for a near
// miss, the value a flag needs, no option the help does not show.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { fail } from "./_program.ts";

/** What {@linkcode parseArgsOrExit} returns for the flags `O`. */
export type ParsedFlags<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean }>
>;

/** Edit distance of `a` and `b`, a swap of neighbours counting as one. */
function distance(a: string, b: string): number {
  const d = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i || j),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(
        d[i - 1][j] + 1,
        d[i][j - 1] + 1,
        d[i - 1][j - 1] + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** The option of `names` that `given` (without dashes) most likely meant. */
export function suggestOption(
  given: string,
  names: string[],
): string | undefined {
  const prefixed = names.filter((name) => name.startsWith(given));
  if (given.length >= 2 && prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of names) {
    const d = distance(given, name);
    if (d < bestDistance && d <= Math.max(1, Math.floor(name.length / 3))) {
      best = name;
      bestDistance = d;
    }
  }
  return best;
}

/** One line for a node:util parseArgs error, naming the flag as typed. */
function describeParseError(
  error: Error & { code?: string },
  options: ParseArgsOptionsConfig,
  usage: string,
): string {
  const help = "(--help lists the options)";
  const quoted = /'([^']+)'/.exec(error.message)?.[1] ?? "";
  if (error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const given = quoted.replace(/^-+/, "").replace(/=.*$/, "");
    const names = Object.keys(options);
    const guess = quoted.startsWith("--") || given.length > 1
      ? suggestOption(given, names)
      : undefined;
    return `Cannot use ${quoted}: no such option${
      guess ? `; did you mean --${guess}?` : ""
    } ${help}`;
  }
  if (error.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const flag = /--[\w-]+/.exec(error.message)?.[0] ?? quoted;
    if (/does not take an argument/.test(error.message)) {
      return `Cannot use ${flag}: it takes no value; write ${flag} alone`;
    }
    // The value's name as the help shows it: "--port N" gives "N".
    const shown = new RegExp(`${flag} ([A-Z][\\w|]*)`).exec(usage)?.[1] ??
      "VALUE";
    if (/ambiguous/.test(error.message)) {
      return `Cannot use ${flag}: it needs a value (${flag} ${shown}), but the next argument is an option; write ${flag}=${shown} for a value that starts with "-"`;
    }
    return `Cannot use ${flag}: it needs a value, as in ${flag} ${shown}`;
  }
  if (error.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    return `Cannot use "${quoted}": this program takes options only ${help}`;
  }
  return `Cannot read the command line: ${error.message.split("\n")[0]}`;
}

/**
 * Parses Deno.args with node:util parseArgs. On --help (declare it in
 * `options`) prints `usage` and exits 0; on a bad flag prints one line
 * naming it (with "did you mean" for a near miss) and exits 2.
 */
export function parseArgsOrExit<const O extends ParseArgsOptionsConfig>(
  usage: string,
  options: O,
  { allowPositionals = true }: { allowPositionals?: boolean } = {},
): ParsedFlags<O> {
  let parsed: ParsedFlags<O>;
  try {
    parsed = parseArgs({ args: Deno.args, allowPositionals, options });
  } catch (error) {
    fail(describeParseError(error as Error, options, usage), 2);
  }
  if ((parsed.values as { help?: unknown }).help) {
    console.log(usage);
    Deno.exit(0);
  }
  return parsed;
}
