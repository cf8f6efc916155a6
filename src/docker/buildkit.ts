import protobuf from 'protobufjs';

/** The build stream's event id for BuildKit progress; its `aux` is a base64 StatusResponse. */
export const BUILDKIT_TRACE = 'moby.buildkit.trace';

// Unpacking the context tar we uploaded: BuildKit's step, not one of the Dockerfile.
const CONTEXT_UNPACK = 'copy /context /';

const MAX_PARTIAL_LINE = 64 * 1024;

// The part of moby/buildkit's control.proto StatusResponse that the progress display uses;
// protobufjs skips the fields left out (per-transfer byte counts, progress groups).
const StatusResponse = protobuf
  .parse(`syntax = "proto3";
    message StatusResponse { repeated Vertex vertexes = 1; repeated VertexLog logs = 3; repeated VertexWarning warnings = 4; }
    message Vertex { string digest = 1; string name = 3; bool cached = 4; Timestamp started = 5; Timestamp completed = 6; }
    message VertexLog { string vertex = 1; int64 stream = 3; bytes msg = 4; }
    message VertexWarning { bytes short = 3; }
    message Timestamp { int64 seconds = 1; int32 nanos = 2; }`)
  .root.lookupType('StatusResponse');

interface Status {
  vertexes: Array<{ digest: string; name: string; cached: boolean; started?: object; completed?: object }>;
  logs: Array<{ vertex: string; stream: number; msg: Uint8Array }>;
  warnings: Array<{ short: Uint8Array }>;
}

/** Encodes a status message as the engine sends it (for tests of the display). */
export function encodeStatus(status: object): string {
  return Buffer.from(StatusResponse.encode(StatusResponse.fromObject(status)).finish()).toString('base64');
}

export function decodeStatus(base64: string): Status {
  return StatusResponse.toObject(StatusResponse.decode(Buffer.from(base64, 'base64')), { arrays: true, longs: Number }) as Status;
}

/**
 * Turns a build's progress into lines. From BuildKit: each Dockerfile step once as it starts
 * (or as cached), then its output line by line; BuildKit's own bookkeeping ("[internal] load
 * build definition", unpacking the uploaded context, transfer counters) is left out. From the
 * classic builder: its text, line by line.
 */
export class BuildProgress {
  private readonly announced = new Set<string>();
  private readonly partial = new Map<string, Buffer>();

  constructor(private readonly print: (line: string) => void) {}

  update(status: Status): void {
    for (const vertex of status.vertexes) {
      if (!this.announced.has(vertex.digest) && (vertex.started || vertex.cached) && !isBookkeeping(vertex.name)) {
        this.announced.add(vertex.digest);
        this.print(vertex.cached ? `${vertex.name} (cached)` : vertex.name);
      }
    }
    // A step's stdout and stderr each have their own unfinished line.
    for (const log of status.logs) this.text(`${log.vertex} ${log.stream}`, log.msg);
    for (const vertex of status.vertexes) if (vertex.completed) this.flush(vertex.digest);
    for (const warning of status.warnings) this.print(`warning: ${Buffer.from(warning.short).toString('utf8')}`);
  }

  /** Prints the complete lines of a stream of text (`key` names it), holding back its unfinished last line. */
  text(key: string, chunk: Uint8Array): void {
    let text = Buffer.concat([this.partial.get(key) ?? Buffer.alloc(0), chunk]);
    let nl: number;
    while ((nl = text.indexOf(10)) >= 0) {
      this.print(text.subarray(0, nl).toString('utf8'));
      text = text.subarray(nl + 1);
    }
    // Output without newlines (a progress bar) is shown in pieces rather than held without bound.
    if (text.length > MAX_PARTIAL_LINE) {
      this.print(text.toString('utf8'));
      text = Buffer.alloc(0);
    }
    this.partial.set(key, text);
  }

  /** Prints what is left of a step's last lines (all steps' when no digest is given). */
  flush(digest?: string): void {
    for (const key of [...this.partial.keys()].filter((k) => digest === undefined || k.startsWith(`${digest} `))) {
      const rest = this.partial.get(key);
      if (rest?.length) this.print(rest.toString('utf8'));
      this.partial.delete(key);
    }
  }
}

function isBookkeeping(name: string): boolean {
  return name.startsWith('[internal]') || name === CONTEXT_UNPACK;
}
