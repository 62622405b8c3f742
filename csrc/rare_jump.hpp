// The rare-jump bound: a certified delta(eps) for the remove ordering of a
// composition of Poisson-subsampled Gaussian steps, tight where the example
// is sampled in far fewer than one step in all (q * steps << 1), which is
// where the characteristic-function bound (cf_bound.hpp) declines or is slow
// and the sampled-count bound (sampled_count.hpp) misses the amplification of
// each step.  docs/certified.md ("The rare-jump bound") has the argument; in
// short:
//
// Step i's loss is u_i = l(x_i), x_i ~ Q_i = (1 - q) N(0, 1) + q N(mu, 1),
// and delta = E[(1 - alpha e^-U)_+], U = sum u_i, alpha = e^eps.  Cut every
// step at x_s (so that a step is "big", x > x_s, with probability p, the
// expected number of big steps being lambda), and let J be the number of big
// steps.  Given J = j, the small steps' sum V and the big steps are
// independent, and
//   (0) J = 0:  E[(1 - alpha e^-U)_+; all small] <= e^(K_s(t) - t eps + C(t))
//       for every t > 0 (the Chernoff bound of the restricted measure:
//       K_s(t) = sum_i log E_Q[e^(t u_i); x_i <= x_s]);
//   (1) J = j >= 1:  (1 - prod_i A_i)_+ <= sum_i (1 - A_i)_+ for A_i >= 0
//       splits alpha e^-V over the j big steps as (alpha e^-V)^(1/j) each, so
//       given V = a the big steps contribute at most
//       sum_i E[(1 - e^((eps - a)/j) e^-u_i)_+; x_i > x_s] / p
//         <= sum_i min(p, delta_1((eps - a)/j)) / p,
//       delta_1 the exact one-step curve q delta_G(log(1 + (e^e - 1)/q); mu).
//       Summed over j with P(J = j) and over which steps are big, this is
//       Phi(a) = sum_steps sum_j P(J' = j - 1) min(p, delta_1((eps - a)/j)),
//       J' the number of big steps among the others, stochastically below
//       J (so P(J = j - 1) may stand in for it: the summand grows in j);
//   (2) Phi grows in a, and the small steps' sum has P(V > a) <= T(a) =
//       min(1, min_t e^(K_b(t) - t a)) for any subset of them (K_b sums
//       max(0, log E[e^(t u); small] / P(small)) over all steps), so over a
//       grid 0 = a_0 < ... < a_K < eps,
//       E[Phi(V)] <= sum_k Phi(a_k) (T(a_(k-1)) - T(a_k)) + P(J >= 1) T(a_K)
//       (T(a_(-1)) = 1): the Stieltjes sum of an increasing function against
//       a dominated tail.
// delta <= (0) + (2).  With few big steps the j = 1 term is N delta_1(eps - V)
// averaged over the small steps' sum: every step alone, with the others'
// losses only shifting eps by their (small, Chernoff-controlled) sum.  The
// cut is tried at a fixed family of lambda (cut_family); each gives a valid
// bound and the smallest is kept.
//
// Numerics.  K_s and K_b come from loss_cgf of TruncatedPllr with
// bounds.hpp's margin, on a geometric grid of t (any t is valid); delta_1 is
// sampled_count.hpp's upper bound on delta_G with its rounding; the law of J
// is the binomials' recursion truncated where the rest is below 1e-300, the
// rest charged in full; the sum is widened by 1e-9 relative.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>


#include "bounds.hpp"
#include "cf_bound.hpp"
#include "cgf.hpp"
#include "mechanisms.hpp"
#include "roots.hpp"
#include "sampled_count.hpp"

namespace edgeworth {

namespace detail {

constexpr double kJumpMaxMean = 0.3;  // E[sampled steps] above which the bound is not tried (never the tightest there)
constexpr std::size_t kJumpMaxSegments = 16;
constexpr double kEpsMaxJump = 1e3;
// The law of J is truncated where the rest is below this, the rest charged in
// full: far below any delta of interest, so that the charge does not become a
// floor that stops the bound falling in eps (1e-40 left 6.8e-45 at every eps
// from 0.2 up at sigma 1, q 1e-7, 1000 steps, where 0.1 gave 3.3e-46).
constexpr double kJumpTail = 1e-300;
constexpr int kJumpGrid = 64;              // points a_k of the Stieltjes sum
constexpr double kJumpTMin = 0.25, kJumpTMax = 1e9, kJumpTRatio = 1.4;  // the grid of t
// The expected numbers of big steps at which the cut is tried: kJumpLambdaMax
// and the decades from 0.1 down to kJumpLambdaMin, all of them (cut_family;
// any lambda gives a valid bound).
constexpr double kJumpLambdaMin = 1e-9, kJumpLambdaMax = 0.3;

struct RareJumpSegment {
  double q, mu, count, p;  // p: probability that one step is above its cut
};

// Everything of the bound that does not depend on eps, for one cut.
struct RareJumpLaw {
  std::vector<RareJumpSegment> segs;
  std::vector<double> t, k_small, k_bulk;  // K_s(t) and K_b(t) with their margins (inf where not evaluated)
  std::vector<double> pj;                  // P(J = j), j = 0, 1, ...
  std::vector<double> pj_rest;             // pj_rest[j] >= P(J >= j) (suffix sums plus the dropped mass)
  double p_some = 0.0;                     // >= P(J >= 1)
};

// The subsampled Gaussian segments of c, or nullopt where another mechanism
// is in it, or where the example is sampled in more than kJumpMaxMean steps
// on average (there the other bounds are the tight ones).
inline std::optional<std::vector<RareJumpSegment>> rare_jump_segments(const Composition& c) {
  if (c.empty() || c.segments().size() > kJumpMaxSegments) return std::nullopt;
  std::vector<RareJumpSegment> out;
  double sampled = 0.0;
  for (const auto& seg : c.segments()) {
    const auto sg = seg.mechanism->subsampled_gaussian_parameters();
    if (!sg) return std::nullopt;
    sampled += seg.count * sg->q;
    out.push_back({sg->q, 1.0 / sg->sigma, seg.count, 0.0});
  }
  if (!(sampled <= kJumpMaxMean)) return std::nullopt;
  return out;
}

// The law for the cut at which lambda steps are expected to be big (each
// step's tail lambda / steps), or nullopt where that cannot be set up.
// eps_cap: the largest eps the law will serve; t beyond the point where both
// CGFs grow faster than eps_cap cannot improve either Chernoff bound.
inline std::optional<RareJumpLaw> rare_jump_law(const Composition& c, std::vector<RareJumpSegment> segs,
                                                double lambda, double eps_cap) {
  RareJumpLaw law;
  const double n_total = c.steps();
  const double target = lambda / n_total;
  Composition small;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    auto& s = segs[i];
    const auto& seg = c.segments()[i];
    const auto x_s = step_cut(seg.mechanism->subsampled_gaussian_parameters().value(), Ordering::Remove, target, s.p);
    if (!x_s || !(s.p > 0.0)) return std::nullopt;
    small.add(std::make_shared<TruncatedPllr>(seg.mechanism, *seg.mechanism->gaussian_reference(), *x_s), 1.0);
  }
  law.segs = segs;
  // The law of J: a sum of binomials, truncated (the rest charged in full).
  std::vector<double> total{1.0};
  double dropped = 0.0;
  for (const auto& s : segs)
    if (!add_binomial(total, s.count, s.p, kJumpTail, dropped)) return std::nullopt;
  law.pj = total;
  law.pj_rest.assign(total.size() + 1, dropped);
  for (std::size_t j = total.size(); j-- > 0;) law.pj_rest[j] = law.pj_rest[j + 1] + total[j];
  // P(J >= 1) = 1 - prod (1 - p)^n, in logs
  double log_none = 0.0;
  for (const auto& s : segs) log_none += s.count * std::log1p(-s.p);
  law.p_some = std::min(1.0, -std::expm1(log_none) * (1.0 + 1e-12));
  // K_s and K_b on the grid of t
  for (double t_grid = kJumpTMin; t_grid <= kJumpTMax; t_grid *= kJumpTRatio) {
    const double t = exact_order(t_grid);
    double ks = 0.0, kb = 0.0;
    bool ok = true;
    try {
      for (std::size_t i = 0; i < segs.size(); ++i) {
        Composition one_seg;
        one_seg.add(small.segments()[i].mechanism, segs[i].count);
        const TiltedCumulants g = loss_cgf(one_seg, Ordering::Remove, Loss::Y, t, 0, kBoundRtol);
        const double k = g.log_mgf + cgf_margin(g);
        if (!std::isfinite(k)) {
          ok = false;
          break;
        }
        ks += k;
        // conditioned on small: minus n log P(small), P(small) rounded down
        kb += std::max(0.0, k - segs[i].count * std::log1p(-segs[i].p * (1.0 + 1e-12)));
      }
    } catch (const std::runtime_error&) {
      ok = false;  // the quadrature failed at this t: the grid ends here (any t is valid)
    }
    if (!ok) break;
    const bool past = !law.t.empty() && ks - law.k_small.back() > eps_cap * (t - law.t.back()) &&
                      kb - law.k_bulk.back() > eps_cap * (t - law.t.back());
    law.t.push_back(t);
    law.k_small.push_back(ks);
    law.k_bulk.push_back(kb);
    if (past) break;  // (both are convex in t: every larger t is worse still)
  }
  if (law.t.empty()) return std::nullopt;
  return law;
}

// The exact one-step curve of the remove ordering, an upper bound with its
// rounding: q delta_G(log(1 + (e^e - 1)/q); mu).
inline double one_step_delta(const RareJumpSegment& s, double e) {
  if (s.q >= 1.0) return gaussian_delta_upper(e, s.mu);
  return std::min(1.0, s.q * gaussian_delta_upper(log1p_expm1_over(e, s.q), s.mu) * (1.0 + 1e-12));
}

// One step's j-th term of Phi without its weight: g_j(a) = min(p, delta_1((eps - a) / j)), increasing in a.
inline double jump_term(const RareJumpSegment& seg, std::size_t j, double eps, double a) {
  return std::min(seg.p, one_step_delta(seg, (eps - a) / static_cast<double>(j)));
}

// (2) by exponential moments instead of the Stieltjes sum (docs/certified.md, "Averaging over V by exponential
// moments"): every small steps' sum V has V >= v_min = sum_steps n log(1 - q) and E[e^(t V)] <= e^(K_b(t)), so an
// increasing g with g(a) <= C1 e^(t1 a) + C2 e^(t2 a) on [v_min, inf) has E[g(V)] <= C1 e^(K_b(t1)) + C2 e^(K_b(t2)).
// The majorant is checked on cells: g is increasing, so g(a) <= g(c_(k+1)) on (c_k, c_(k+1)], and the exponentials
// are at least their values at c_k there; past eps every g_j is at most p.  t1 and t2 come from the grid of t, C1
// covers the cells up to a chosen point A, C2 what is left; (t1, A, t2) are chosen on Phi (a heuristic: any choice
// is valid), then each segment's g_j gets its own C1, C2 and bound b_j, made increasing in j (so that the law of J
// may stand in for that of J', as in the Stieltjes sum).  +inf where it cannot be set up.
inline double rare_jump_average_exp(const RareJumpLaw& law, double eps) {
  constexpr int kNeg = 32, kPos = 128;  // cells below 0 (uniform) and on [0, eps] (quadratic)
  double v_min = 0.0, np = 0.0;
  for (const auto& seg : law.segs) {
    v_min += seg.count * std::log1p(-seg.q);
    np += seg.count * seg.p;
  }
  v_min *= 1.0 + 1e-12;  // (below the exact sum)
  if (!(eps > 0.0) || !(v_min < 0.0)) return std::numeric_limits<double>::infinity();
  // cell starts c0 and ends c1; the last cell, [eps, inf), has no end (every g_j is at most p there)
  std::vector<double> c0, c1;
  for (int k = 0; k < kNeg; ++k) {
    c0.push_back(v_min * (1.0 - static_cast<double>(k) / kNeg));
    c1.push_back(v_min * (1.0 - static_cast<double>(k + 1) / kNeg));
  }
  for (int k = 0; k < kPos; ++k) {
    const double r0 = static_cast<double>(k) / kPos, r1 = static_cast<double>(k + 1) / kPos;
    c0.push_back(eps * r0 * r0);
    c1.push_back(eps * r1 * r1);
  }
  c1.back() = eps;
  const std::size_t cells = c0.size() + 1;
  c0.push_back(eps);
  // the terms kept: j up to jmax, the rest (J >= jmax) charged p per step, once that charge is below 1e-4 of the
  // first term's value at V = 0 (or the law of J ends)
  double first_at_0 = 0.0;
  for (const auto& seg : law.segs) first_at_0 += seg.count * jump_term(seg, 1, eps, 0.0);
  first_at_0 *= law.pj[0];
  std::size_t jmax = 1;
  while (jmax < law.pj.size() && law.pj_rest[jmax] * np > 1e-4 * first_at_0) ++jmax;
  // g[s][j - 1][k]: segment s's g_j at the end of cell k; phi: their weighted sum (for the choice only)
  const std::size_t ns = law.segs.size();
  std::vector<std::vector<std::vector<double>>> g(ns);
  std::vector<double> phi(cells, 0.0);
  for (std::size_t si = 0; si < ns; ++si) {
    const auto& seg = law.segs[si];
    g[si].assign(jmax, std::vector<double>(cells, seg.p));
    for (std::size_t j = 1; j <= jmax; ++j)
      for (std::size_t k = 0; k + 1 < cells; ++k) g[si][j - 1][k] = jump_term(seg, j, eps, c1[k]);
    for (std::size_t k = 0; k < cells; ++k) {
      for (std::size_t j = 1; j <= jmax; ++j) phi[k] += seg.count * law.pj[j - 1] * g[si][j - 1][k];
      phi[k] += seg.count * law.pj_rest[jmax] * seg.p;
    }
  }
  // the exponentials at the cell starts, tabulated once per t
  const std::size_t nt = law.t.size();
  std::vector<double> ex_neg(nt * cells), ex_pos(nt * cells);
  std::size_t nt_used = 0;
  for (std::size_t i = 0; i < nt; ++i) {
    if (law.t[i] * std::max(eps, -v_min) > 700.0) break;  // (the exponentials overflow past here)
    for (std::size_t k = 0; k < cells; ++k) {
      ex_neg[i * cells + k] = std::exp(-law.t[i] * c0[k]);
      ex_pos[i * cells + k] = std::exp(law.t[i] * c0[k]);
    }
    nt_used = i + 1;
  }
  if (nt_used == 0) return std::numeric_limits<double>::infinity();
  // C1 over the cells up to m, at t1 = t[i]; C2 over what C1 leaves of every cell, at t2 = t[j]
  auto c1_of = [&](const std::vector<double>& v, std::size_t i, std::size_t m) {
    double c = 0.0;
    for (std::size_t k = 0; k <= m; ++k) c = std::max(c, v[k] * ex_neg[i * cells + k]);
    return c;
  };
  auto c2_of = [&](const std::vector<double>& v, std::size_t i, double c1v, std::size_t j) {
    double c = 0.0;
    for (std::size_t k = 0; k < cells; ++k) c = std::max(c, (v[k] - c1v * ex_pos[i * cells + k]) * ex_neg[j * cells + k]);
    return c;
  };
  // the choice: t1 from 3 grid points above the best single exponential's t down to 10 below it, until 3 in a row
  // do not help (the second exponential takes the steep part near eps), A at 16 points, t2 upwards from t1 while it
  // helps.  (Searched narrower, 6 points of t1 and 8 of A, the choice moved between neighbouring inputs enough that
  // the certified eps rose by 2e-3 from sigma 0.600 to 0.6025 at q 3.2e-5, 126 steps, delta 2.87e-4.)
  std::size_t i_single = 0;
  {
    double v_single = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < nt_used; ++i) {
      const double v = c1_of(phi, i, cells - 1) * std::exp(law.k_bulk[i]);
      if (v < v_single) v_single = v, i_single = i;
    }
  }
  double best = std::numeric_limits<double>::infinity();
  std::size_t bi = 0, bj = 0, bm = 0;
  int worse_i = 0;
  for (std::size_t i = std::min(nt_used - 1, i_single + 3); i + 10 > i_single && worse_i < 3; --i) {
    const double best_before = best;
    for (std::size_t m = cells / 32; m < cells; m += cells / 16) {
      const double ca = c1_of(phi, i, m);
      double prev = std::numeric_limits<double>::infinity();
      int worse = 0;
      for (std::size_t j = i; j < nt_used && worse < 2; ++j) {
        const double v = ca * std::exp(law.k_bulk[i]) + c2_of(phi, i, ca, j) * std::exp(law.k_bulk[j]);
        worse = v < prev ? 0 : worse + 1;
        prev = v;
        if (v < best) best = v, bi = i, bj = j, bm = m;
      }
    }
    worse_i = best < best_before ? 0 : worse_i + 1;
    if (i == 0) break;
  }
  if (!std::isfinite(best)) return best;
  // each segment's g_j with its own coefficients at (t1, A, t2).  Rounding: C1 and C2 are widened by 1e-12
  // relative, which covers the few ulps of each exp and product and of the differences v - C1 e^(t1 c), as the
  // majorant is at least v at every cell.
  const double e1 = std::exp(law.k_bulk[bi]), e2 = std::exp(law.k_bulk[bj]);
  double sum = 0.0;
  for (std::size_t si = 0; si < ns; ++si) {
    const auto& seg = law.segs[si];
    double part = 0.0, b_prev = 0.0;
    for (std::size_t j = 1; j <= jmax; ++j) {
      const double ca = c1_of(g[si][j - 1], bi, bm), cb = c2_of(g[si][j - 1], bi, ca, bj);
      const double b = std::max(b_prev, std::min(seg.p, (ca * e1 + cb * e2) * (1.0 + 1e-12)));
      part += law.pj[j - 1] * b;
      b_prev = b;
    }
    part += law.pj_rest[jmax] * seg.p;  // (b_j <= p for every j)
    sum += seg.count * part;
  }
  return std::min(law.p_some, sum);
}

// Term (0) of the bound for one cut: no big step.  It only grows as the cut
// moves out (K_s(t) grows with the cut at every t > 0), and falls in eps.
inline double no_jump_delta(const RareJumpLaw& law, double eps) {
  double log_b0 = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < law.t.size(); ++i)
    log_b0 = std::min(log_b0, law.k_small[i] - law.t[i] * eps + chernoff_c(law.t[i]));
  return std::exp(std::min(0.0, log_b0));
}

// The bound on delta(eps) for one cut.
inline double rare_jump_delta(const RareJumpLaw& law, double eps) {
  const double b0 = no_jump_delta(law, eps);  // (0) no big step
  // (2) the Stieltjes sum over a_k = eps (k / K)^2
  auto tail_bound = [&](double a) {
    double lt = 0.0;
    for (std::size_t i = 0; i < law.t.size(); ++i) lt = std::min(lt, law.k_bulk[i] - law.t[i] * a);
    return std::exp(lt);
  };
  auto phi = [&](double a) {
    double s = 0.0;
    for (const auto& seg : law.segs) {
      double part = 0.0;
      for (std::size_t j = 1; j <= law.pj.size(); ++j) {
        const double w = law.pj[j - 1];
        // the rest (j and beyond) is at most P(J >= j - 1) p: charged in full once it is negligible
        if (law.pj_rest[j - 1] * seg.p <= 1e-12 * part) {
          part += law.pj_rest[j - 1] * seg.p;
          break;
        }
        part += w * std::min(seg.p, one_step_delta(seg, (eps - a) / static_cast<double>(j)));
        if (j == law.pj.size()) part += law.pj_rest[j] * seg.p;
      }
      s += seg.count * part;
    }
    return std::min(law.p_some, s);
  };
  double sum = 0.0, t_prev = 1.0;
  for (int k = 0; k < kJumpGrid; ++k) {
    const double r = static_cast<double>(k) / kJumpGrid;
    const double a = eps * r * r;
    const double tk = std::min(t_prev, tail_bound(a));
    if (k == 0 || tk < t_prev) sum += phi(a) * (t_prev - tk);
    t_prev = tk;
  }
  sum += law.p_some * t_prev;
  sum = std::min(sum, rare_jump_average_exp(law, eps));
  return std::min(1.0, (b0 + sum) * (1.0 + 1e-9));
}

inline double one_jump_delta(const std::vector<RareJumpSegment>& segs, double eps) {
  double s = 0.0;
  for (const auto& seg : segs) s += seg.count * one_step_delta(seg, eps);
  return std::min(1.0, s);
}

}  // namespace detail

// The one-jump approximation (not a bound): the eps at which
// sum over steps of delta_1(eps) = delta, every step alone with the others'
// losses taken as 0.  Where the rare-jump bound is close to it, the bound is
// close to the truth (the small steps' sum and the steps with two or more
// jumps are what the approximation leaves out, and both only add to delta);
// the caller uses it only to decide how much more work a tighter bound could
// be worth.  nullopt where the bound does not apply.
inline std::optional<double> one_jump_delta(const Composition& c, double eps) {
  const auto segs = detail::rare_jump_segments(c);
  if (!segs) return std::nullopt;
  return detail::one_jump_delta(*segs, eps);
}

inline std::optional<double> one_jump_epsilon(const Composition& c, double delta) {
  const auto segs = detail::rare_jump_segments(c);
  if (!segs) return std::nullopt;
  auto f = [&](double e) {
    const double s = detail::one_jump_delta(*segs, e);
    return (s > 0.0 ? std::log(s) : -745.0) - std::log(delta);
  };
  double lo = 0.0, flo = f(lo);
  if (flo <= 0.0) return 0.0;
  const auto b = detail::expand_bracket(
      f, detail::Bracket{lo, 1e-3, flo, f(1e-3)},
      [](double hi, double) { return hi >= detail::kEpsMaxJump ? std::nullopt : std::optional<double>(4.0 * hi); },
      [](double v) { return v > 0.0; });
  if (!b) return std::nullopt;
  auto tol = [](double x, double y) { return std::fabs(y - x) <= 1e-6 * std::fabs(y); };
  return detail::solve_bracket(f, *b, tol, 60, detail::End::Middle);  // (an approximation: the middle)
}

namespace detail {

// The laws of one composition by cut, built as they are asked for.
class RareJumpLaws {
 public:
  RareJumpLaws(const Composition& c, std::vector<RareJumpSegment> segs, double eps_cap)
      : c_(c), segs_(std::move(segs)), eps_cap_(eps_cap) {}
  const RareJumpLaw* at(double lambda) {
    for (const auto& e : built_)
      if (e.first == lambda) return e.second ? &*e.second : nullptr;
    built_.emplace_back(lambda, rare_jump_law(c_, segs_, lambda, eps_cap_));
    return built_.back().second ? &*built_.back().second : nullptr;
  }

 private:
  const Composition& c_;
  std::vector<RareJumpSegment> segs_;
  double eps_cap_;
  std::deque<std::pair<double, std::optional<RareJumpLaw>>> built_;  // (a handful; a deque keeps the pointers handed out valid)
};

// The fixed family of cuts: lambda = kJumpLambdaMax, the decades from 0.1
// down to kJumpLambdaMin (cut_family), then deeper by factors of
// kJumpDeepRatio down to kJumpDeepMin (deep_cuts).  Both inversions take the
// smallest bound over all of them (issue 16): a minimum over a fixed family
// of bounds, each monotone in the inputs, is monotone, where a cut chosen at
// a reference eps is not (sigma 0.605 and 0.610, q 3.2e-5, 126 steps, delta
// 2.87e-4: the search at the one-jump approximation's eps picked cuts a decade
// apart, and the certified eps jumped from 0.00325 to 0.00465).  The deep cuts
// matter at tiny delta, where two big steps sharing eps cost P(J >= 1)
// delta_1(eps / 2) (sigma 2.37, q 3.16e-3, 2 steps, eps 1.778: 2.3e-59 at
// lambda = 1e-9, against the truth's 1.4e-70).  They are scanned outwards
// only while term (0) at the last one built stays below what is to be beaten
// by more than kJumpDeepRtol: it grows as the cut moves out, so no deeper cut
// can do better by more than that (the minimum over the whole family, to
// kJumpDeepRtol; where term (0) is the whole bound it saturates, and every
// deep cut gives the same bound to a few ulps: sigma 4.03, q 6.2e-6, 44203
// steps, delta 1.8e-13 built all 94 before the slack).
constexpr double kJumpDeepRatio = 1e-3, kJumpDeepMin = 1e-290, kJumpDeepRtol = 1e-6;
inline std::vector<double> cut_family() {
  std::vector<double> out{kJumpLambdaMax};
  for (double lambda = 0.1; lambda >= kJumpLambdaMin * 0.999; lambda /= 10.0) out.push_back(lambda);
  return out;
}
inline std::vector<double> deep_cuts() {
  std::vector<double> out;
  for (double lambda = kJumpLambdaMin * kJumpDeepRatio; lambda >= kJumpDeepMin; lambda *= kJumpDeepRatio)
    out.push_back(lambda);
  return out;
}

// The smallest delta bound at eps over the whole family; inf where no cut can
// be set up.
inline double family_delta(RareJumpLaws& laws, double eps) {
  double best = std::numeric_limits<double>::infinity();
  for (double lambda : cut_family())
    if (const RareJumpLaw* law = laws.at(lambda)) best = std::min(best, rare_jump_delta(*law, eps));
  const RareJumpLaw* last = laws.at(cut_family().back());
  for (double lambda : deep_cuts()) {
    if (last == nullptr || no_jump_delta(*last, eps) >= best * (1.0 - kJumpDeepRtol)) break;
    last = laws.at(lambda);
    if (last != nullptr) best = std::min(best, rare_jump_delta(*last, eps));
  }
  return best;
}

}  // namespace detail

// The rare-jump bound on delta(eps), remove ordering, the smallest over the
// family of cuts; nullopt where it does not apply (a mechanism other than the
// subsampled Gaussian, or more than kJumpMaxMean sampled steps expected).
inline std::optional<double> rare_jump_delta(const Composition& c, double eps) {
  detail::require(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got " + detail::fmt(eps));
  auto segs = detail::rare_jump_segments(c);
  if (!segs) return std::nullopt;
  detail::RareJumpLaws laws(c, std::move(*segs), eps);
  const double best = detail::family_delta(laws, eps);
  if (!std::isfinite(best)) return std::nullopt;
  return best;
}

// The rare-jump bound on eps(delta), remove ordering: the smallest eps whose
// bound is at most delta, searched below eps_hi (a certified eps), over every
// cut of the family (the best cut moves with eps: sigma 0.5, q 1e-7, 1000
// steps, delta 1e-5: 1.8e-4 at the cut best at the one-jump approximation's
// eps, 6.9e-5 at the one best at the answer); nullopt where it does not apply
// or does not improve on eps_hi.
inline std::optional<double> rare_jump_epsilon(const Composition& c, double delta, double eps_hi) {
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  if (!(eps_hi > 0.0) || !std::isfinite(eps_hi)) return std::nullopt;
  auto segs = detail::rare_jump_segments(c);
  if (!segs) return std::nullopt;
  const auto approx = one_jump_epsilon(c, delta);
  detail::RareJumpLaws laws(c, std::move(*segs), eps_hi);
  const double guess = approx ? std::min(*approx, eps_hi) : 0.5 * eps_hi;
  // Per cut, the smallest eps whose bound is at most delta; the smallest over
  // the family.  A cut whose bound at the best eps so far is above delta
  // cannot do better there (the bound falls in eps), so its root is not
  // sought.  The cuts nearest the one-jump approximation's optimum go first,
  // so that most of the others are ruled out by that one evaluation.
  std::vector<std::pair<double, const detail::RareJumpLaw*>> family;  // (bound at guess, law)
  for (double lambda : detail::cut_family())
    if (const detail::RareJumpLaw* law = laws.at(lambda)) family.emplace_back(detail::rare_jump_delta(*law, guess), law);
  std::stable_sort(family.begin(), family.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::optional<double> best;
  for (const auto& entry : family) {
    const detail::RareJumpLaw* law = entry.second;
    if (best && detail::rare_jump_delta(*law, *best) > delta) continue;
    const auto e = detail::cf_epsilon_root([&](double x) { return detail::rare_jump_delta(*law, x); }, delta,
                                           best ? *best : eps_hi, best ? *best : guess, true);
    if (e && (!best || *e < *best)) best = e;
  }
  // the deep cuts, outwards while term (0) at the last one built can still be
  // below delta at an eps kJumpDeepRtol below the best so far
  const detail::RareJumpLaw* last = laws.at(detail::cut_family().back());
  for (double lambda : detail::deep_cuts()) {
    const double at = best ? *best : eps_hi;
    if (last == nullptr || detail::no_jump_delta(*last, at * (1.0 - detail::kJumpDeepRtol)) > delta) break;
    last = laws.at(lambda);
    if (last == nullptr || detail::rare_jump_delta(*last, at) > delta) continue;
    const detail::RareJumpLaw* law = last;
    const auto e = detail::cf_epsilon_root([&](double x) { return detail::rare_jump_delta(*law, x); }, delta, at,
                                           best ? *best : guess, true);
    if (e && (!best || *e < *best)) best = e;
  }
  return best;
}

}  // namespace edgeworth
