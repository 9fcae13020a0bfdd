import { describe, expect, it } from 'vitest';
import { addHist, bucketOf, emptyHist, quantile } from './analytics.histogram.js';

describe('latency histogram', () => {
  it('reads percentiles within 10% of the true ones', () => {
    const hist = emptyHist();
    const samples = Array.from({ length: 1000 }, (_, i) => 1 + i * 0.7);
    for (const ms of samples) hist[bucketOf(ms)] += 1;
    for (const q of [0.5, 0.95, 0.99]) {
      const truth = samples[Math.ceil(q * samples.length) - 1];
      const read = quantile(hist, q)!;
      expect(read).toBeGreaterThanOrEqual(truth * 0.999);
      expect(read).toBeLessThanOrEqual(truth * 1.1 + 0.1);
    }
  });
  it('adds histograms element by element (instances and minutes add up), and an empty one has no percentile', () => {
    const a = emptyHist();
    const b = emptyHist();
    a[bucketOf(5)] += 3;
    b[bucketOf(5)] += 2;
    b[bucketOf(500)] += 5;
    addHist(a, b);
    expect(a.reduce((x, y) => x + y, 0)).toBe(10);
    expect(quantile(a, 0.5)).toBeLessThan(6);
    expect(quantile(a, 0.99)).toBeGreaterThan(450);
    expect(quantile(emptyHist(), 0.5)).toBeNull();
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(1e12)).toBe(a.length - 1);
  });
});
