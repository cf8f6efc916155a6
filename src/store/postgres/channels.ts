/**
 * The NOTIFY channels of the PostgreSQL store, heard by every replica's one listening connection
 * (records.ts RecordListener). Payloads stay small: the limit is 8000 bytes.
 */

/** Records were written: `BUILD_ID:LAST_SEQ`, one per build and batch. */
export const RECORDS_CHANNEL = 'buildbot_records';

/** A cancel was asked for on some replica: the build id. The owner also sees the mark at its heartbeat. */
export const CANCELS_CHANNEL = 'buildbot_cancels';
