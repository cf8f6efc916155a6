import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BuildService } from './service.js';
import type { Engines } from '../engines/types.js';

/**
 * Prometheus metrics of the builds, from the service's records. prom-client is the
 * Prometheus client for Node that the ecosystem uses (text format, histograms, process
 * metrics); the service id stays out of the labels: one series per service would grow without
 * bound on a server that builds many.
 */
/** What the HTTP front counts of its streams (its StreamGate). */
export interface StreamCounts {
  readonly open: number;
  readonly dropped: number;
}

export function createMetrics(service: BuildService, streams?: StreamCounts, _engines?: Engines): { contentType: string; text(): Promise<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'buildbot_' });
  const builds = new Counter({ name: 'buildbot_builds_total', help: 'Builds that ended, by result.', labelNames: ['result'], registers: [registry] });
  const duration = new Histogram({
    name: 'buildbot_build_duration_seconds', help: 'Time from a build\'s start (after waiting in line) to its end.',
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1200, 3600], registers: [registry],
  });
  const steps = new Histogram({
    name: 'buildbot_step_duration_seconds', help: 'Time each pipeline step took.', labelNames: ['step'],
    buckets: [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800], registers: [registry],
  });
  const output = new Counter({ name: 'buildbot_output_bytes_total', help: 'Build output bytes, by stream.', labelNames: ['stream'], registers: [registry] });
  new Gauge({ name: 'buildbot_builds_running', help: 'Builds running now.', registers: [registry], collect() { this.set(service.counts.running); } });
  new Gauge({ name: 'buildbot_builds_queued', help: 'Builds waiting for a slot or for their service.', registers: [registry], collect() { this.set(service.counts.queued); } });
  if (streams) {
    new Gauge({ name: 'buildbot_http_streams_open', help: 'HTTP event and log streams open now.', registers: [registry], collect() { this.set(streams.open); } });
    // Read from the gate at each scrape (it only counts up).
    new Counter({ name: 'buildbot_http_readers_dropped_total', help: 'HTTP stream readers closed for taking nothing for --http-idle-reader.', registers: [registry], collect() { this.reset(); this.inc(streams.dropped); } });
  }
  // Zero from the start, so a rate() over a fresh server has both series.
  for (const stream of ['stdout', 'stderr']) output.inc({ stream }, 0);
  for (const result of ['succeeded', 'failed', 'cancelled']) builds.inc({ result }, 0);

  service.observe({
    record(build, record, bytes) {
      if (record.type === 'output') output.inc({ stream: record.stream }, bytes?.length ?? Buffer.byteLength(record.data));
      else if (record.type === 'step' && record.phase === 'end') steps.observe({ step: record.name }, record.duration ?? 0);
      else if (record.type === 'exit') {
        builds.inc({ result: record.status });
        if (build.summary.duration !== undefined) duration.observe(build.summary.duration);
      }
    },
  });
  return { contentType: registry.contentType, text: () => registry.metrics() };
}
