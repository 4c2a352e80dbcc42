// A TLS ClientHello written by hand, for tests that need one of a given
// size: TLS 1.3 and 1.2 suites, an x25519 key share, an SNI name, and a
// padding extension (RFC 7685) that makes it as large as asked.

const u16 = (n: number) => [n >> 8 & 255, n & 255];
const u24 = (n: number) => [n >> 16 & 255, n >> 8 & 255, n & 255];
const extension = (type: number, body: number[]) => [
  ...u16(type),
  ...u16(body.length),
  ...body,
];

/**
 * A ClientHello for `serverName` ("" sends no SNI), in TLS records of at
 * most 16 KiB, at least `size` bytes long (padding added to reach it).
 */
export function clientHello(serverName: string, size = 0): Uint8Array {
  const name = [...new TextEncoder().encode(serverName)];
  const random = (n: number) => [...crypto.getRandomValues(new Uint8Array(n))];
  const build = (padding: number) => {
    const extensions = [
      ...(name.length > 0
        ? extension(0, [
          ...u16(name.length + 3),
          0,
          ...u16(name.length),
          ...name,
        ])
        : []),
      ...extension(10, [...u16(4), 0x00, 0x1d, 0x00, 0x17]),
      ...extension(11, [1, 0]),
      ...extension(13, [...u16(6), 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]),
      ...extension(43, [4, 0x03, 0x04, 0x03, 0x03]),
      ...extension(45, [1, 1]),
      ...extension(51, [...u16(36), 0x00, 0x1d, ...u16(32), ...random(32)]),
      ...(padding > 0 ? extension(21, new Array(padding).fill(0)) : []),
    ];
    const body = [
      0x03,
      0x03,
      ...random(32),
      0,
      ...u16(8),
      0x13,
      0x01,
      0x13,
      0x02,
      0xc0,
      0x2b,
      0xc0,
      0x2f,
      1,
      0,
      ...u16(extensions.length),
      ...extensions,
    ];
    const handshake = [1, ...u24(body.length), ...body];
    const out: number[] = [];
    for (let i = 0; i < handshake.length; i += 16384) {
      const part = handshake.slice(i, i + 16384);
      out.push(22, 3, 1, ...u16(part.length), ...part);
    }
    return out;
  };
  const plain = build(0);
  const bytes = plain.length >= size ? plain : build(size - plain.length);
  return new Uint8Array(bytes);
}

/**
 * Sends `hello` on a new TCP connection and waits up to `ms` for the
 * server's first bytes: "answered" (a TLS record came back), "closed" (EOF
 * or reset), or "silent".
 */
export async function sendHello(
  port: number,
  hello: Uint8Array,
  ms: number,
): Promise<"answered" | "closed" | "silent"> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await conn.write(hello);
    const buffer = new Uint8Array(5);
    const read = conn.read(buffer).then(
      (n) => n === null ? "closed" as const : "answered" as const,
      () => "closed" as const,
    );
    const silent = new Promise<"silent">((resolve) => {
      timer = setTimeout(() => resolve("silent"), ms);
    });
    return await Promise.race([read, silent]);
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}
