// The examples as a new user meets them: every task run with the exact
// `deno run` line of deno.json (from a temporary folder, so that certs/
// and kv.sqlite3 land there), its --help, every flag its help lists, and
// the usual mistakes (a port in use, a key set but not readable, a typo in
// a flag, a client for the wrong kind of server, a certificate the server
// does not allow), each answered in one line with the fix, never a stack
// trace.
import assert from "node:assert/strict";
import { connect } from "../server.ts";
import {
  type CommandResult,
  findPython,
  lines,
  peerTest,
  runCommand,
  type RunningExample,
  spawn,
  startExample,
  within,
} from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)) as {
  tasks: Record<string, string>;
};

/** The example tasks: every task that runs a script in examples/. */
const TASKS = Object.keys(config.tasks).filter((name) =>
  / examples\/\w+\.ts$/.test(config.tasks[name])
);

/**
 * The arguments after `deno` of task `name`, exactly as deno.json has them
 * but with the script's absolute path (run from another folder).
 */
function taskArgs(name: string): string[] {
  const words = config.tasks[name].split(" ");
  assert.equal(words[0], "deno", config.tasks[name]);
  return words.slice(1).map((word) =>
    word.startsWith("examples/") ? `${ROOT}${word}` : word
  );
}

/** Runs task `name` with `args` in `cwd` (a temporary folder) to its end. */
function runTask(
  name: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  return runCommand(Deno.execPath(), [...taskArgs(name), ...args], {
    cwd: options.cwd ?? Deno.cwd(),
    env: options.env,
  });
}

/** Starts server task `name` in `cwd` on a free port. */
function startTask(
  name: string,
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<RunningExample> {
  // startExample runs `deno <args>` in this process's folder: the task's
  // relative paths (certs, kv.sqlite3) are made absolute under `cwd`.
  const words = taskArgs(name).map((word) =>
    word.replace(
      /^(--allow-(?:read|write)=)(.*)$/,
      (_, flag: string, list: string) =>
        flag + list.split(",").map((path) => `${cwd}/${path}`).join(","),
    )
  );
  const paths = [
    ...(words.some((word) =>
        word.startsWith("--allow-read=") && word.includes("/certs")
      )
      ? ["--certs", `${cwd}/certs`]
      : []),
    ...(name === "kv-server" ? ["--db", `${cwd}/kv.sqlite3`] : []),
  ];
  return startExample([...words, "--port", "0", ...paths, ...args], {
    env,
    listening: /listening on (?:https:\/\/localhost|127\.0\.0\.1):(\d+)/,
  });
}

/** Asserts `result` is one line on stderr matching `pattern`, no stack. */
function assertOneLine(
  result: CommandResult,
  code: number,
  pattern: RegExp,
): void {
  const text = result.stderr.trim();
  assert.equal(result.code, code, text);
  assert.equal(text.split("\n").length, 1, `more than one line:\n${text}`);
  assert.match(text, pattern);
  assert.doesNotMatch(text, /^\s+at |Uncaught|error: /m);
}

/** A sample value for each kind of value the helps name. */
function sample(flag: string, meta: string): string {
  if (flag === "--hash") return "SHA-256";
  if (flag === "--hostname") return "127.0.0.1";
  if (flag === "--url") return "https://localhost:1/";
  return { N: "0", MS: "1000", "PATH|URL": ":memory:" }[meta] ?? "x";
}

async function tempDir(): Promise<string & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "connauth-examples-" });
  return Object.assign(path, {
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  }) as string & AsyncDisposable;
}

/** Waits until `log` has a line matching `pattern`; returns it. */
async function logLine(log: string[], pattern: RegExp): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const line = log.find((line) => pattern.test(line));
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no log line matching ${pattern}:\n${log.join("\n")}`);
}

Deno.test("every example task answers --help, and accepts every flag its help lists", async () => {
  assert.ok(TASKS.length >= 12, `only ${TASKS.join(", ")}`);
  for (const name of TASKS) {
    const help = await runTask(name, ["--help"]);
    assert.equal(help.code, 0, `${name}: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^Usage: deno task ${name} `), name);
    assert.ok(help.stdout.includes(config.tasks[name]), name);
    // Each option line: "  --port N   ..." or "  -h, --help   ...".
    const listed = [
      ...help.stdout.matchAll(
        /^ {2}(?:(-\w), )?(--[\w-]+)(?: ([A-Z][\w|]*))?/gm,
      ),
    ];
    assert.ok(listed.some((match) => match[2] === "--help"), name);
    for (const [, short] of listed) {
      if (short) assert.equal(short, "-h", `${name} shows ${short}`);
    }
    // Every listed flag at once, then --help: parsed, none refused.
    const args = listed.flatMap(([, , flag, meta]) =>
      flag === "--help" ? [] : meta ? [flag, sample(flag, meta)] : [flag]
    );
    const all = await runTask(name, [...args, "-h"]);
    assert.equal(all.code, 0, `${name} ${args.join(" ")}: ${all.stderr}`);
    assert.equal(all.stdout, help.stdout, name);
  }
});

peerTest(
  "examples/python_coordinator.py --help is whole",
  { label: "python3", path: findPython("3") },
  async (python) => {
    const output = await runCommand(python, [
      `${ROOT}examples/python_coordinator.py`,
      "--help",
    ]);
    const text = output.stdout;
    assert.equal(output.code, 0, output.stderr);
    const description = text.split("\n\n")[1].replace(/\s+/g, " ");
    assert.match(description, /CONNAUTH_SECRET.*results\.$/);
    assert.match(text, /--port PORT +TCP port \(default 18050/);
    assert.match(text, /deno task python-worker --port/);
  },
);

Deno.test("servers start on --port 0 with their task's permissions, and clients reach that port through theirs", async () => {
  await using dir = await tempDir();
  const key = { CONNAUTH_SECRET: "examples test key" };
  {
    await using server = await startTask("echo-server", [], dir, key);
    const echo = await runTask(
      "echo-client",
      ["--port", String(server.port), "hi"],
      { env: key },
    );
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout, "hi\n");
  }
  {
    // Writes a development set to dir/certs on its first run.
    await using server = await startTask("tls-echo-server", [], dir);
    const echo = await runTask(
      "tls-echo-client",
      ["--port", String(server.port), "hi"],
      { cwd: dir },
    );
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout, "hi\n");
  }
  {
    await using server = await startTask("kv-server", [], dir);
    const url = `https://localhost:${server.port}/`;
    const set = await runTask("kv-client", ["--url", url, "set", "a", "b"], {
      cwd: dir,
    });
    assert.equal(set.code, 0, set.stderr);
    const got = await runTask("kv-client", ["--url", url, "get", "a"], {
      cwd: dir,
    });
    assert.equal(got.stdout, "b\n", got.stderr);
  }
  for (const name of ["upper-server", "noise-echo-server"]) {
    await using server = await startTask(name, [], dir);
    assert.ok(server.port > 0, name);
  }
});

Deno.test("every example has its own default port", async () => {
  const ports = new Map<string, string>();
  for (const name of TASKS.filter((name) => name.endsWith("-server"))) {
    const help = await runTask(name, ["--help"]);
    const port = /--port N +TCP port \(default (\d+)/.exec(help.stdout)?.[1];
    assert.ok(port, `${name} shows no default port`);
    assert.ok(!ports.has(port), `${name} and ${ports.get(port)} share ${port}`);
    ports.set(port, name);
  }
  assert.equal(ports.size, 5);
});

Deno.test("a port in use is one line naming the port and --port, for serve() and for serveHttps()", async () => {
  await using dir = await tempDir();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(taken.addr.port);
  const echo = await runTask("echo-server", ["--port", port], {
    cwd: dir,
    env: { CONNAUTH_SECRET: "examples test key" },
  });
  assertOneLine(
    echo,
    1,
    new RegExp(
      `^Cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use .*deno task echo-server --port \\d+ \\(--port 0 picks a free one\\)$`,
    ),
  );
  assert.equal(
    (await runTask("certs", [], { cwd: dir })).code,
    0,
    "deno task certs",
  );
  const kv = await runTask("kv-server", ["--port", port, "--db", ":memory:"], {
    cwd: dir,
  });
  assertOneLine(
    kv,
    1,
    new RegExp(`^Cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`),
  );
});

Deno.test("a key set in the environment but not readable stops the program with the permission to add, never the demo key", async () => {
  const script = (name: string) => `${ROOT}examples/${name}`;
  for (
    const [name, variable, fileFlag] of [
      ["echo_server.ts", "CONNAUTH_SECRET", "--secret-file"],
      ["echo_client.ts", "CONNAUTH_SECRET", "--secret-file"],
      ["noise_echo_server.ts", "CONNAUTH_PSK", "--psk-file"],
    ]
  ) {
    const result = await runCommand(
      Deno.execPath(),
      ["run", "--allow-net=127.0.0.1", script(name), "--port", "0"],
      { env: { [variable]: "a set key" } },
    );
    assertOneLine(
      result,
      2,
      new RegExp(
        `^Cannot read ${variable}: no env permission .*run: deno run .*--allow-env=${variable} .*\\(or pass ${fileFlag} PATH\\)$`,
      ),
    );
    assert.doesNotMatch(
      result.stderr,
      /warning|using the (built-in|public) demo/,
    );
    assert.equal(result.stdout, "");
  }
});

Deno.test("a mistyped or valueless flag is one line: did you mean, and the value it needs", async () => {
  const cases: [string, string[], RegExp][] = [
    [
      "echo-server",
      ["--prot", "18010"],
      /^Cannot use --prot: no such option; did you mean --port\? \(--help lists the options\)$/,
    ],
    [
      "echo-server",
      ["--port"],
      /^Cannot use --port: it needs a value, as in --port N$/,
    ],
    // -p is not in the help, so it is not an option either.
    ["echo-server", ["-p", "1"], /^Cannot use -p: no such option \(--help/],
    ["kv-client", ["--cert", "x", "keys"], /did you mean --certs\?/],
    ["tls-echo-client", ["--mutal"], /did you mean --mutual\?/],
    [
      "tls-echo-server",
      ["--hmac=yes"],
      /^Cannot use --hmac: it takes no value/,
    ],
    [
      "kv-server",
      ["extra"],
      /^Cannot use "extra": this program takes options only/,
    ],
    [
      "echo-server",
      ["--port", "x"],
      /^Cannot use --port "x": expected 0 to 65535$/,
    ],
  ];
  for (const [name, args, pattern] of cases) {
    // The task's line, run directly: deno task adds a line of its own.
    const result = await runTask(name, args);
    assertOneLine(result, 2, pattern);
    assert.doesNotMatch(result.stderr, /caFile|certFile|keyFile/);
  }
});

Deno.test("tls-echo-client tells an HMAC challenge and a plain HMAC server from an echo; echo-client does not blame the key of a TLS server", async () => {
  await using dir = await tempDir();
  const key = { CONNAUTH_SECRET: "examples test key" };
  await using hmac = await startTask("tls-echo-server", ["--hmac"], dir, key);
  for (
    const message of ["hi", "a message longer than the 32 bytes of a challenge"]
  ) {
    const result = await runTask(
      "tls-echo-client",
      ["--port", String(hmac.port), message],
      { cwd: dir, env: key },
    );
    assertOneLine(
      result,
      1,
      /^Cannot get the echo: the server sent an HMAC challenge; run with --hmac /,
    );
    assert.equal(result.stdout, "");
  }
  const keyed = await runTask(
    "tls-echo-client",
    ["--port", String(hmac.port), "--hmac", "hi"],
    { cwd: dir, env: key },
  );
  assert.equal(keyed.stdout, "hi\n", keyed.stderr);
  // And the other way round: a plain client gets no challenge from TLS.
  const plainClient = await runTask(
    "echo-client",
    ["--port", String(hmac.port), "--timeout", "500", "hi"],
    { env: key },
  );
  assertOneLine(
    plainClient,
    1,
    /the server sent no HMAC challenge, so it never saw our key: .*tls-echo-client/,
  );

  await using plain = await startTask("echo-server", [], dir, key);
  const result = await runTask(
    "tls-echo-client",
    ["--port", String(plain.port), "hi"],
    { cwd: dir },
  );
  assertOneLine(result, 1, /does not speak TLS on this port.*echo-client/);
});

Deno.test("kv-client refused with 403 says --allow-client, and kv-server logs the refusal", async () => {
  await using dir = await tempDir();
  const certs = await runTask(
    "certs",
    ["--force", "--client", "alice", "--client", "bob"],
    { cwd: dir },
  );
  assert.equal(certs.code, 0, certs.stderr);
  {
    await using server = await startTask("kv-server", [], dir);
    const url = `https://localhost:${server.port}/`;
    const result = await runTask("kv-client", ["--url", url, "keys"], {
      cwd: dir,
    });
    assertOneLine(
      result,
      1,
      /^Cannot list the keys: the server does not allow our client certificate \(HTTP 403\): .*"alice".*start the server with --allow-client alice /,
    );
    const line = await logLine(server.log, /^forbidden /);
    assert.match(
      line,
      /^forbidden 127\.0\.0\.1:\d+: .*"alice" is not in the allow-list \(HTTP 403\); to let it in, start the server with --allow-client alice/,
    );
  }
  await using server = await startTask(
    "kv-server",
    ["--allow-client", "alice"],
    dir,
  );
  const url = `https://localhost:${server.port}/`;
  const allowed = await runTask("kv-client", ["--url", url, "keys"], {
    cwd: dir,
  });
  assert.equal(allowed.code, 0, allowed.stderr);
});

Deno.test("kv-client with no server says nothing listens and how to start one", async () => {
  await using dir = await tempDir();
  const certs = await runTask("certs", ["--force"], { cwd: dir });
  assert.equal(certs.code, 0, certs.stderr);
  // A port that was free a moment ago: bound, read and released.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const result = await runTask(
    "kv-client",
    ["--url", `https://localhost:${port}/`, "keys"],
    { cwd: dir },
  );
  assertOneLine(
    result,
    1,
    /^Cannot list the keys: nothing listens at https:\/\/localhost:\d+\/; start the server \(deno task kv-server\) or pass --url$/,
  );
});

Deno.test("echo-server and upper-server log a wrong key in the same one-line format", async () => {
  await using dir = await tempDir();
  const formats: string[] = [];
  for (const name of ["echo-server", "upper-server"]) {
    await using server = await startTask(name, [], dir, {
      CONNAUTH_SECRET: "the server's key",
    });
    const conn = await connect({
      hostname: "127.0.0.1",
      port: server.port,
      secret: "another key",
      timeout: 5000,
    });
    // The server closes the connection once it has checked our reply.
    await within(
      conn.readable.pipeTo(new WritableStream()).catch(() => {}),
      5000,
      "the server closing a wrong key's connection",
    );
    const line = await logLine(server.log, /^reject /);
    assert.doesNotMatch(line, /the server's key|another key/);
    formats.push(line.replace(/127\.0\.0\.1:\d+/, "ADDR"));
  }
  assert.match(
    formats[0],
    /^reject ADDR: authentication failed \(wrong-key\): Cannot authenticate the client: /,
  );
  assert.equal(formats[1], formats[0]);
});

peerTest(
  "examples/python_coordinator.py on Python 3.11 says why it refused a worker without --legacy-md5",
  { label: "python3.11", path: findPython("3.11") },
  async (python) => {
    const coordinator = spawn(
      python,
      [`${ROOT}examples/python_coordinator.py`, "--port", "0"],
      { env: { CONNAUTH_SECRET: "examples test key" } },
    );
    coordinator.stdin.close();
    const stderr = new Response(coordinator.stderr).text();
    const output = lines(coordinator.stdout);
    const first = await within(output.next(), 10_000, "the listening line");
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(String(first.value))
      ?.[1];
    assert.ok(port, String(first.value));
    const worker = (args: string[]) =>
      runTask("python-worker", ["--port", port, ...args], {
        env: { CONNAUTH_SECRET: "examples test key" },
      });
    assert.equal((await worker([])).code, 1);
    const refused = await within(output.next(), 10_000, "the refusal line");
    assert.match(
      String(refused.value),
      /^worker refused: the worker closed the connection during the handshake \(EOFError\); this is Python 3\.11, .*--legacy-md5/,
    );
    const accepted = await worker(["--legacy-md5"]);
    assert.equal(accepted.code, 0, accepted.stderr);
    for await (const _ of output) {
      // the job lines
    }
    assert.equal((await coordinator.status).code, 0, await stderr);
  },
);
