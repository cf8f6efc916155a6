import type { BuildRecord, BuildSummary } from '../model/build.js';
import type { RecordLog } from '../model/record-log.js';

/** A build the service holds in memory, as the store sees it. */
export interface LiveBuild {
  readonly id: string;
  readonly summary: BuildSummary;
  readonly log: RecordLog;
}

/**
 * What a store needs of the build service (src/service/service.ts is one): it hears of builds
 * and their records as they come, asks for a live build before its stored copy, and tells the
 * service when a finished build is stored and may be forgotten.
 */
export interface LiveBuilds {
  retainFinished: boolean;
  observe(observer: { submitted?(build: LiveBuild): void; record?(build: LiveBuild, record: BuildRecord): void }): void;
  get(id: string): LiveBuild | undefined;
  release(id: string): void;
}
