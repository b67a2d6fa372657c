import { readFileSync } from 'node:fs';
import { z } from 'zod';

const entry = z.object({ prompt: z.number().min(0), completion: z.number().min(0) });
const table = z.record(z.string(), entry);

/** USD per million prompt and completion tokens. */
export type Price = z.infer<typeof entry>;

/**
 * The price table that turns tokens into cost. Keys are `provider/model`, `model`,
 * `provider/*` or `*`, most specific first. From LLM_PRICES (JSON) or LLM_PRICES_FILE.
 */
export class PriceTable {
  private constructor(private readonly prices: Record<string, Price>) {}

  static from(o: { json?: string; file?: string }): PriceTable {
    const raw = o.file ? readFileSync(o.file, 'utf8') : o.json ?? '{}';
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (err) {
      throw new Error(`price table is not JSON: ${(err as Error).message}`, { cause: err });
    }
    const r = table.safeParse(parsed);
    if (!r.success) throw new Error(`price table: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return new PriceTable(r.data);
  }

  price(provider: string, model: string): Price | undefined {
    return this.prices[`${provider}/${model}`] ?? this.prices[model] ?? this.prices[`${provider}/*`] ?? this.prices['*'];
  }

  /** Cost in USD; 0 when the model has no price. */
  cost(provider: string, model: string, promptTokens: number, completionTokens: number): number {
    const p = this.price(provider, model);
    if (!p) return 0;
    return (promptTokens * p.prompt + completionTokens * p.completion) / 1_000_000;
  }
}
