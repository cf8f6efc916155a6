import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engines } from '../engines/types.js';
import type { BuildService } from './service.js';

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

export function createMetrics(service: BuildService, streams?: StreamCounts, engines?: Engines): { contentType: string; text(): Promise<string> } {
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
  if (engines) {
    // Per engine (a handful, from the flags: bounded labels), read from the pool at each scrape.
    const each = (name: string, help: string, value: (e: ReturnType<Engines['list']>[number]) => number) => new Gauge({
      name, help, labelNames: ['engine'], registers: [registry],
      collect() {
        this.reset();
        for (const e of engines.list()) this.set({ engine: e.name }, value(e));
      },
    });
    each('buildbot_engine_up', 'Whether the engine answers (1) or not (0).', (e) => (e.state === 'up' ? 1 : 0));
    each('buildbot_engine_draining', 'Whether the engine is drained (1: it takes no new build).', (e) => (e.draining ? 1 : 0));
    each('buildbot_engine_builds_running', 'Builds running on the engine now.', (e) => e.running);
    each('buildbot_engine_slots', 'Builds the engine takes at once (slots=N).', (e) => e.slots);
    new Counter({
      name: 'buildbot_builds_placed_total', help: 'Builds placed on an engine: on the one their service hashes to (preferred), on another after the affinity wait (spill), or elsewhere because it was down or draining (failover).',
      labelNames: ['engine', 'placement'], registers: [registry],
      collect() {
        this.reset();
        // Every engine with every placement, zeros included, so rate() sees the series from the start.
        for (const e of engines.list()) for (const placement of ['preferred', 'spill', 'failover']) this.inc({ engine: e.name, placement }, 0);
        for (const p of engines.placed()) this.inc({ engine: p.engine, placement: p.placement }, p.count);
      },
    });
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
