import type { BuildRecord } from './build.js';

/**
 * A compact form of a build's records, for clients that pass output on as bytes (the remote
 * client, `buildbot.sh --server`): as Docker's attach stream does, each record is a header and
 * its payload, so output is neither escaped by the server nor parsed by the client. NDJSON,
 * which every other client reads, costs both sides a JSON pass over every byte of output.
 *
 * A frame: kind (1 byte), seq (uint32 big-endian), payload length (uint32 big-endian), payload.
 * Kind 1 and 2 carry an output record's bytes (stdout, stderr); kind 0 any other record as JSON;
 * kind 0 with seq 0 and no payload is a heartbeat.
 */
export const FRAMES_TYPE = 'application/vnd.buildbot.frames';

export const FRAME_HEADER = 9;
export const FRAME_KIND = { record: 0, stdout: 1, stderr: 2 } as const;
/** No frame the server sends is longer: an output record holds at most one engine read. */
export const MAX_FRAME_PAYLOAD = 16 * 1024 * 1024;

export function recordFrame(record: BuildRecord): Buffer {
  if (record.type === 'output') {
    const bytes = (record as { bytes?: Buffer }).bytes ?? Buffer.from(record.data);
    return frame(record.stream === 'stderr' ? FRAME_KIND.stderr : FRAME_KIND.stdout, record.seq, bytes);
  }
  return frame(FRAME_KIND.record, record.seq, Buffer.from(JSON.stringify(record)));
}

export const HEARTBEAT_FRAME = Buffer.alloc(FRAME_HEADER);

function frame(kind: number, seq: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  out[0] = kind;
  out.writeUInt32BE(seq, 1);
  out.writeUInt32BE(payload.length, 5);
  payload.copy(out, FRAME_HEADER);
  return out;
}

export interface FrameHandlers {
  /** A piece of an output frame's payload, as it arrives; `offset` is where it starts in the payload. */
  output(stream: 'stdout' | 'stderr', seq: number, piece: Buffer, offset: number): void;
  /** A whole output frame has arrived. */
  outputEnd(seq: number): void;
  record(record: BuildRecord): void;
}

/**
 * Reads frames from a byte stream as it comes. Output goes on piece by piece, without waiting
 * for the frame's end or copying it; only JSON records are gathered. Throws on what no server
 * of ours sends (an unknown kind, a payload over MAX_FRAME_PAYLOAD).
 */
export class FrameReader {
  private readonly header = Buffer.alloc(FRAME_HEADER);
  private headerFilled = 0;
  private current?: { kind: number; seq: number; length: number; got: number; parts: Buffer[] };

  constructor(private readonly on: FrameHandlers) {}

  write(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length || (this.current && this.current.got === this.current.length)) {
      const frame = this.current;
      if (!frame) {
        const n = Math.min(FRAME_HEADER - this.headerFilled, chunk.length - pos);
        chunk.copy(this.header, this.headerFilled, pos, pos + n);
        this.headerFilled += n;
        pos += n;
        if (this.headerFilled < FRAME_HEADER) return;
        this.headerFilled = 0;
        const kind = this.header[0];
        const length = this.header.readUInt32BE(5);
        if (kind > FRAME_KIND.stderr || length > MAX_FRAME_PAYLOAD) throw new Error('not a frame of a buildbot server');
        this.current = { kind, seq: this.header.readUInt32BE(1), length, got: 0, parts: [] };
        continue;
      }
      if (frame.got < frame.length) {
        const n = Math.min(frame.length - frame.got, chunk.length - pos);
        const piece = chunk.subarray(pos, pos + n);
        pos += n;
        if (frame.kind === FRAME_KIND.record) frame.parts.push(piece);
        else this.on.output(frame.kind === FRAME_KIND.stderr ? 'stderr' : 'stdout', frame.seq, piece, frame.got);
        frame.got += n;
      }
      if (frame.got < frame.length) return;
      this.current = undefined;
      if (frame.kind !== FRAME_KIND.record) this.on.outputEnd(frame.seq);
      else if (frame.length > 0) this.on.record(JSON.parse(Buffer.concat(frame.parts).toString('utf8')) as BuildRecord);
    }
  }
}
