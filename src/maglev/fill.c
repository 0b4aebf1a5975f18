// SPDX-License-Identifier: Apache-2.0
/*
 * The Maglev table fill, compiled to WebAssembly (xdp/Makefile builds
 * xdp/build/xlb_maglev_fill.wasm; src/maglev/wasm.ts loads it).
 *
 * The same turns as fillMaglevTable in table.ts (Eisenbud et al.,
 * "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
 * section 3.4, Pseudocode 1, with weights), written for a compiler that
 * keeps the walk's state in registers: the build pool runs this for a
 * large sync (10,000 tables of M = 1021 in about half the time of the
 * JavaScript on this class of machine, measured). table.ts stays the
 * reference: tests compare the two on random inputs, slot for slot.
 *
 * Freestanding: no libc, no globals, no allocation. Every array lives in
 * the module's memory above __heap_base, laid out by the caller.
 */

typedef unsigned int u32;
typedef int i32;
typedef long long i64;

/* Whether backend i takes the turn it is offered, with unequal weights: each
 * round it adds its weight to its credit and takes its turn only when the
 * credit reaches the largest weight (then pays that back). */
static inline int takes_turn(double *credit, const double *weights, int i, double max_weight)
{
	const double c = credit[i] + weights[i];
	if (c < max_weight) {
		credit[i] = c;
		return 0;
	}
	credit[i] = c - max_weight;
	return 1;
}

/* Run the turns of n prepared backends over M zeroed slots of `table`.
 *
 * ids, next, skips, weights: backend k's ID (> 0), first preferred slot
 *   (offset), step (skip) and weight, as prepareMaglevBuild writes them;
 *   next is advanced as the walk goes.
 * credit, taken: working state; taken[k] ends as backend k's slot count.
 * empty: at least floor(sqrt(M)) + 1 entries; inverses: n entries (scratch).
 *
 * Phase 1 walks permutations until sqrt(M) slots are left; phase 2 finds
 * each remaining slot among the empty ones directly: the first empty slot
 * on backend i's walk from x is the empty e with the fewest steps,
 * (e - x) * skip^-1 mod M. Both give exactly the table phase 1 alone would.
 */
__attribute__((export_name("fill"))) void fill(u32 *table, i32 M, i32 n, const u32 *ids, i32 *next, const i32 *skips,
					       const double *weights, double *credit, i32 *taken, i32 *empty, i32 *inverses)
{
	double max_weight = 0;
	int equal_weights = 1;
	for (int k = 0; k < n; k++) {
		double w = weights[k];
		if (w > max_weight)
			max_weight = w;
		if (w != weights[0])
			equal_weights = 0;
		credit[k] = 0;
		taken[k] = 0;
		inverses[k] = 0;
	}
	int root = 0;
	while ((i64)(root + 1) * (root + 1) <= M)
		root++;

	int filled = 0;
	int i = 0; /* the backend offered the next turn; turns run on across both phases */
	const int walk_until = M - root;
	while (filled < walk_until) {
		if (equal_weights || takes_turn(credit, weights, i, max_weight)) {
			/* slot + skip mod M, as slot - (M - skip), plus M when negative. */
			const int back = M - skips[i];
			int slot = next[i];
			while (table[slot] != 0) {
				slot -= back;
				slot += M & (slot >> 31);
			}
			table[slot] = ids[i];
			taken[i]++;
			slot -= back;
			slot += M & (slot >> 31);
			next[i] = slot;
			filled++;
		}
		if (++i == n)
			i = 0;
	}

	int empty_count = 0;
	for (int slot = 0; slot < M; slot++)
		if (table[slot] == 0)
			empty[empty_count++] = slot;
	while (empty_count > 0) {
		if (equal_weights || takes_turn(credit, weights, i, max_weight)) {
			const int x = next[i];
			if (inverses[i] == 0) {
				/* skip^-1 mod M (M prime, 0 < skip < M): extended Euclid. */
				i64 r0 = M, r1 = skips[i], t0 = 0, t1 = 1;
				while (r1 != 0) {
					i64 q = r0 / r1, r = r0 - q * r1, t = t0 - q * t1;
					r0 = r1;
					r1 = r;
					t0 = t1;
					t1 = t;
				}
				inverses[i] = (i32)(t0 < 0 ? t0 + M : t0);
			}
			const i64 inverse = inverses[i];
			int best = 0;
			i64 best_steps = M;
			for (int j = 0; j < empty_count; j++) {
				i64 delta = empty[j] - x;
				if (delta < 0)
					delta += M;
				/* delta, inverse < 2^17: exact in 64 bits. */
				i64 steps = delta * inverse % M;
				if (steps < best_steps) {
					best_steps = steps;
					best = j;
				}
			}
			const int slot = empty[best];
			empty[best] = empty[--empty_count];
			table[slot] = ids[i];
			taken[i]++;
			next[i] = slot + skips[i] >= M ? slot + skips[i] - M : slot + skips[i];
		}
		if (++i == n)
			i = 0;
	}
}
