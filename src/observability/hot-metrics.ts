import type { Metric, Registry } from 'prom-client';

/**
 * Counters and histograms for code that records on every request (the AI extension: twelve
 * observations per attempt). prom-client validates the labels and builds a hash string of them on
 * every call: at 500 attempts a second that was ~7% of the extension's CPU and ~3.6 KB of garbage
 * per attempt (src/ai-extension/README.md, "Cost per attempt"). Here a series is found through one
 * Map per label, in the metric's label order, with no string built; nothing is allocated once the
 * series exists. What a scrape reads is the same data prom-client's own Counter and Histogram give
 * (`get()`), rendered by the registry they are registered in, so /metrics reads the same
 * (test/unit/hot-metrics.test.ts compares the two texts).
 */

type LabelValues<T extends string> = Partial<Record<T, string | number>>;

/** One line of a scrape, as prom-client's metrics give it (`metricName`: a histogram's _bucket, _sum, _count). */
export interface SeriesValue {
  labels: Record<string, string | number | undefined>;
  value: number;
  metricName?: string;
}

interface HotMetricConfig<T extends string> {
  name: string;
  help: string;
  labelNames: readonly T[];
  registers: readonly Registry[];
}

/** Stands for an absent label in the lookup maps (prom-client leaves the label out of the series). */
const ABSENT = Symbol('absent');

/** Series by label values, one Map level per label name. */
class SeriesIndex<T extends string, S> {
  private readonly root = new Map<unknown, unknown>();
  /** In creation order: the order prom-client lists its series in. */
  readonly all: S[] = [];

  constructor(
    private readonly metric: string,
    private readonly labelNames: readonly T[],
  ) {}

  /** The series of `labels`, made with `create` (given a copy of the labels) on first use. */
  find(labels: LabelValues<T> | undefined, create: (labels: LabelValues<T>) => S): S {
    let level = this.root;
    const names = this.labelNames;
    const last = names.length - 1;
    if (last < 0) return this.leaf(level, '', labels, create);
    for (let i = 0; i < last; i++) {
      const value = labels?.[names[i] as T];
      const key = value === undefined ? ABSENT : String(value);
      let next = level.get(key) as Map<unknown, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(key, next);
      }
      level = next;
    }
    const value = labels?.[names[last] as T];
    return this.leaf(level, value === undefined ? ABSENT : String(value), labels, create);
  }

  private leaf(level: Map<unknown, unknown>, key: unknown, labels: LabelValues<T> | undefined, create: (labels: LabelValues<T>) => S): S {
    const found = level.get(key) as S | undefined;
    if (found !== undefined) return found;
    const copy: LabelValues<T> = {};
    for (const name of Object.keys(labels ?? {})) {
      if (!this.labelNames.includes(name as T)) throw new Error(`Added label "${name}" is not included in initial labelset: ${JSON.stringify(this.labelNames)} (metric ${this.metric})`);
      copy[name as T] = labels?.[name as T];
    }
    const series = create(copy);
    level.set(key, series);
    this.all.push(series);
    return series;
  }

  clear(): void {
    this.root.clear();
    this.all.length = 0;
  }
}

function register(metric: object, registries: readonly Registry[]): void {
  // A registry only calls get() and reset() and reads name, help, type and aggregator: what a
  // prom-client Metric offers it and these classes provide.
  for (const registry of registries) registry.registerMetric(metric as unknown as Metric);
}

interface CounterSeries<T extends string> {
  labels: LabelValues<T>;
  value: number;
}

/** A counter with prom-client's inc(labels, value) and get(). */
export class HotCounter<T extends string = string> {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly series: SeriesIndex<T, CounterSeries<T>>;

  constructor(config: HotMetricConfig<T>) {
    this.name = config.name;
    this.help = config.help;
    this.series = new SeriesIndex(config.name, config.labelNames);
    register(this, config.registers);
  }

  inc(labels?: LabelValues<T>, value = 1): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${String(value)} (metric ${this.name})`);
    if (value < 0) throw new Error(`It is not possible to decrease a counter (metric ${this.name})`);
    this.series.find(labels, (copy) => ({ labels: copy, value: 0 })).value += value;
  }

  get(): Promise<{ name: string; help: string; type: 'counter'; aggregator: 'sum'; values: { labels: LabelValues<T>; value: number }[] }> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.series.all.map((s) => ({ value: s.value, labels: s.labels })),
    });
  }

  reset(): void {
    this.series.clear();
  }

  /** Served by another registry too. */
  registerIn(registry: Registry): void {
    register(this, [registry]);
  }
}

interface HistogramSeries<T extends string> {
  labels: LabelValues<T>;
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  buckets: Float64Array;
  sum: number;
  count: number;
}

/** A histogram with prom-client's observe(labels, value) and get(). */
export class HotHistogram<T extends string = string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly bounds: readonly number[];
  private readonly series: SeriesIndex<T, HistogramSeries<T>>;

  constructor(config: HotMetricConfig<T> & { buckets: readonly number[] }) {
    this.name = config.name;
    this.help = config.help;
    if ((config.labelNames as readonly string[]).includes('le')) throw new Error(`le is a reserved label keyword (metric ${config.name})`);
    // In the order given, as prom-client keeps them (ours are ascending).
    this.bounds = [...config.buckets];
    this.series = new SeriesIndex(config.name, config.labelNames);
    register(this, config.registers);
  }

  observe(labels: LabelValues<T>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${String(value)} (metric ${this.name})`);
    const s = this.series.find(labels, (copy) => ({ labels: copy, buckets: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }));
    let i = 0;
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++;
    (s.buckets[i] as number)++;
    s.sum += value;
    s.count++;
  }

  /** As prom-client's Histogram lists them: per series its cumulative buckets, +Inf, sum, count. */
  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: SeriesValue[] }> {
    const values: SeriesValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const s of this.series.all) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += s.buckets[i] as number;
        values.push({ labels: { le: this.bounds[i] as number, ...s.labels }, value: cumulative, metricName: bucketName });
      }
      values.push(
        { labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucketName },
        { labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` },
        { labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    this.series.clear();
  }

  /** Served by another registry too. */
  registerIn(registry: Registry): void {
    register(this, [registry]);
  }
}
