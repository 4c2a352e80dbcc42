// Shared by the example servers and clients: turn Ctrl-C (SIGINT) and
// SIGTERM into an AbortSignal, so a program shuts down cleanly instead of
// dying mid-write.

/** Aborts on the first SIGINT or SIGTERM; dispose to stop listening. */
export function shutdownSignal(): { signal: AbortSignal } & Disposable {
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  const listeners = signals.map((name) => {
    const listener = () =>
      controller.abort(new DOMException(`Received ${name}`, "AbortError"));
    Deno.addSignalListener(name, listener);
    return [name, listener] as const;
  });
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      for (const [name, listener] of listeners) {
        Deno.removeSignalListener(name, listener);
      }
    },
  };
}
