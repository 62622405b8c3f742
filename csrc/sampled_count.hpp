// The sampled-count bound: a certified delta(eps) for compositions of
// Gaussian-reference mechanisms whose Q is a mixture of unit Gaussians
// (the Poisson-subsampled Gaussian, ELS's mixture), tight where few steps
// sample the example in all, which is exactly where the characteristic-
// function bound (cf_bound.hpp) declines and the Chernoff bound (bounds.hpp)
// is loose.  docs/certified.md ("The sampled-count bound") has the argument.
//
// Each step's Q_i is sum_j w_ij N(m_ij, 1) against P_i = N(0, 1).  Expand the
// product over which component every step drew: Q^T = sum_S w_S Q_S, where S
// runs over the assignments, Q_S = N(v_S, I) is a product of unit Gaussians,
// and the empty assignment (every step drew a mean-0 component: nothing was
// sampled) gives Q_none = P^T with weight w0 = prod_i f_i^(n_i), f_i the
// weight of the mean-0 components.  With W = 1 - w0, alpha = e^eps >= 1, and
// the hockey-stick divergence H_a(A || B) = integral (dA - a dB)_+:
//
// Remove (delta = H_alpha(Q^T || P^T)).  Q^T - alpha P^T
//   = sum_{S != none} w_S (Q_S - beta P^T),  beta = 1 + (alpha - 1) / W,
// and the positive part of a sum is at most the sum of the positive parts, so
//   delta <= sum_{S != none} w_S H_beta(N(v_S, I) || N(0, I))
//          = sum_{S != none} w_S delta_G(log beta; |v_S|),
// delta_G(e; mu) = Phi(mu/2 - e/mu) - e^e Phi(-mu/2 - e/mu), the Gaussian
// mechanism's exact curve.  (The first step is exact: it is the "advanced
// joint convexity" of Balle, Barthe and Gaboardi, arXiv 1807.01647.)
//
// Add (delta = H_alpha(P^T || Q^T)).  If alpha w0 >= 1 the integrand
// P^T (1 - alpha w0) - alpha sum w_S Q_S is <= 0 and delta = 0.  Otherwise,
// with g = 1 - alpha w0 and beta' = alpha W / g (>= 1),
//   delta <= (g / W) sum_{S != none} w_S delta_G(log beta'; |v_S|).
//
// delta_G grows with mu, and |v_S|^2 = sum over the sampled steps of m_ij^2
// <= K m^2, K the number of steps that drew a component with a non-zero mean
// and m the largest |mean| of the composition, so both sums are at most
// sum_{k >= 1} P(K = k) delta_G(., sqrt(k) m); K is a sum of independent
// binomials, Bin(n_i, 1 - f_i).  Both bounds are exact for one step of the
// subsampled Gaussian, and nearly so while E[K] is small; they ignore the
// amplification among sampled steps, so with many sampled steps they are
// loose and the other bounds answer.
//
// Numerics.  P(K = k) comes from the binomials' ratio recursion in logs
// (no lgamma of 2^53), truncated where the rest of the law is below 1e-40 and
// that rest charged in full (delta_G <= 1).  delta_G is an upper bound with
// its rounding: the two terms are erfc values and their difference carries
// 16 ulps of both plus the rounding of the exponent e + log Phi; where
// a = e / mu - mu / 2 >= 30 it comes from Mills' ratio instead, free of the
// difference (gaussian_delta_far).  The sum is widened by 1e-9 relative for
// the recursion.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <vector>


#include "cgf.hpp"
#include "mechanisms.hpp"
#include "roots.hpp"

namespace edgeworth {

namespace detail {

constexpr double kCountMaxMean = 64.0;     // E[K] above which the bound is not tried (it is loose there)
constexpr std::size_t kCountMaxTerms = 4096;  // the longest law of K kept
constexpr double kCountTail = 1e-40;       // truncation of each binomial (charged in full)
constexpr std::size_t kCountMaxSegments = 64;
constexpr double kCountEpsMax = 1e12;        // the largest eps the inversion searches

namespace mills {

// The asymptotic series of Mills' ratio M(x) = Phi(-x) / phi(x) = (1/x) S(x),
//   S(x) = sum_{k >= 0} (-1)^k (2k - 1)!! x^(-2k),
// envelops it for x > 0 (Abramowitz & Stegun 26.2.12: the remainder has the
// sign of the first omitted term and is smaller), so a partial sum ending on
// a positive term is an upper bound and one ending on a negative term a lower
// bound.  T(x) = 1 - S(x) = 1 - x M(x) > 0 likewise, from its k >= 1 terms.
// Used from x = 30 on, where the first omitted term (k = 12) is below 1e-24.
inline double partial(double x, int last, int first) {
  const double r = 1.0 / (x * x);
  double term = 1.0, sum = 0.0;  // term = (2k - 1)!! x^(-2k)
  for (int k = 0; k <= last; ++k) {
    if (k > 0) term *= (2.0 * k - 1.0) * r;
    if (k >= first) sum += (k % 2 == 0 ? term : -term);
  }
  return sum;
}
inline double s_upper(double x) { return partial(x, 10, 0); }
inline double s_lower(double x) { return partial(x, 11, 0); }
inline double t_upper(double x) { return -partial(x, 11, 1); }  // T = -(sum from k = 1)

}  // namespace mills

// delta_G(e; mu) for a = e / mu - mu / 2 >= 30, where Phi(-a) and e^e Phi(-b)
// agree to many digits (at mu = 1e-6 to 1 part in 3e7) and their difference is
// what matters.  With b = a + mu, e^e phi(b) = phi(a) exactly, so
//   delta_G = phi(a) (M(a) - M(b)),   M(a) - M(b) = int_a^b T(x) dx <= mu (T(a) + T(b)) / 2
// (T = -M' is convex, M being completely monotone: M(x) = int_0^inf e^(-x t - t^2/2) dt), and also
// <= M_upper(a) - M_lower(b).  (Before, the bound
// here was Gordon's Phi(-a) alone: at sigma 1e6, q 1, delta 1e-300 it put the
// certified eps 1.3 % above the truth, and delta(eps) rose again past a = 37.)
inline double gaussian_delta_far(double a, double mu) {
  constexpr double kLogSqrt2Pi = 0.91893853320467274178;
  constexpr double kUlp = std::numeric_limits<double>::epsilon();
  const double lo = a * (1.0 - 8.0 * kUlp);                // below the exact a: every factor below falls in a
  const double b_hi = (a + mu) * (1.0 + 8.0 * kUlp);
  const double b_lo = (lo + mu) * (1.0 - 4.0 * kUlp);      // below the exact b
  const double by_slope = mu * 0.5 * (mills::t_upper(lo) + mills::t_upper(b_lo)) * (1.0 + 64.0 * kUlp);
  const double m_a = mills::s_upper(lo) / lo;
  const double by_ends = m_a - mills::s_lower(b_hi) / b_hi + 8.0 * kUlp * m_a;
  const double diff = std::min(by_slope, by_ends);
  if (!(diff > 0.0)) return 0.0;
  return std::min(1.0, std::exp(-0.5 * lo * lo - kLogSqrt2Pi + std::log(diff)) * (1.0 + 1e-12));
}

// An upper bound on the Gaussian mechanism's delta_G(e; mu), e >= 0, mu > 0,
// with its rounding (see above).
inline double gaussian_delta_upper(double e, double mu) {
  constexpr double kSqrt1_2 = 0.70710678118654752440, kLogSqrt2Pi = 0.91893853320467274178;
  constexpr double kUlp = std::numeric_limits<double>::epsilon();
  const double a = e / mu - 0.5 * mu, b = a + mu;
  if (a >= 30.0) return gaussian_delta_far(a, mu);
  const double t1 = 0.5 * std::erfc(a * kSqrt1_2);
  double log_phi_b;  // log Phi(-b), or a lower bound on it (which only raises delta_G's bound)
  if (b <= 37.0) {
    log_phi_b = std::log(0.5 * std::erfc(b * kSqrt1_2));
  } else {
    log_phi_b = -0.5 * b * b - kLogSqrt2Pi + std::log(b / (b * b + 1.0));  // Gordon's lower bound
  }
  const double x = e + log_phi_b;
  const double t2 = std::exp(x);
  const double err = (16.0 + 4.0 * (std::fabs(e) + std::fabs(log_phi_b))) * kUlp * (t1 + t2);
  return std::min(1.0, std::max(0.0, t1 - t2) + err);
}

// log(1 + (e^e - 1) / w), e >= 0, w in (0, 1]: the log of the ratio beta of
// the bounds above (and of the one-step curve's argument in rare_jump.hpp),
// in logs where e^e / w overflows.  (Before, log1p(expm1(e) / w) was inf past
// e = 709.78 + log w, delta_G(inf) = 0, and the certified eps stopped there:
// 709.09 at sigma 0.025, q 0.5, delta 1e-5, where the truth is 962.65.)
inline double log1p_expm1_over(double e, double w) {
  const double x = std::expm1(e) / w;
  if (std::isfinite(x)) return std::log1p(x);
  // e > 700 here (or w tiny): log(e^e - 1) = e + log1p(-e^-e)
  const double lx = e + std::log1p(-std::exp(-e)) - std::log(w);
  return lx + std::log1p(std::exp(-lx));
}

// The law of K, the number of steps that drew a component with a non-zero
// mean, kept as P(K = 0) in logs (exact), P(K = k) for k >= 1, and an upper
// bound on the mass dropped by truncation; and m, the largest |mean|.
struct SampledCountLaw {
  double log_w0 = 0.0;     // log P(K = 0)
  double w_some = 0.0;     // W = P(K >= 1) = -expm1(log_w0)
  std::vector<double> pk;  // pk[k] = P(K = k) for k >= 1 (pk[0] = 0: K = 0 is the term the bound removes)
  double tail = 0.0;       // >= the mass of K beyond pk (charged with delta_G = 1)
  double m = 0.0;          // the largest |mean|: |v_S|^2 <= K m^2
};

// The weight p of the components with a non-zero mean (the step "samples"
// the example) and the largest |mean| of one step, for the mechanisms the
// bound covers; false for the others.  p is summed directly, never as 1 - f:
// at q = 1e-7 the rounding of 1 - q would move P(K >= 1) by 1e-9 relative.
inline bool sampled_weight_and_reach(const Mechanism& mech, double& p, double& m) {
  const auto form = mech.as_gaussian_mixture();
  const auto weight = mech.sampled_weight();
  if (!form || !weight) return false;
  p = std::min(*weight, 1.0);
  m = 0.0;
  for (double mean : form->means) m = std::max(m, std::fabs(mean));
  return true;
}

// Bin(n, p) from k = 0, truncated where the rest is below `tail`; the
// pmf's first entry is P(K = 0) = (1 - p)^n.  Returns the dropped mass bound.
inline double binomial_pmf(double n, double p, std::vector<double>& pmf, double tail = kCountTail) {
  pmf.clear();
  if (p <= 0.0) {
    pmf.push_back(1.0);
    return 0.0;
  }
  if (p >= 1.0) {  // K = n for sure (n <= kCountMaxMean here)
    pmf.assign(static_cast<std::size_t>(n) + 1, 0.0);
    pmf.back() = 1.0;
    return 0.0;
  }
  const double log_odds = std::log(p) - std::log1p(-p);
  double lp = n * std::log1p(-p);
  pmf.push_back(std::exp(lp));
  for (double k = 1.0; k <= n; k += 1.0) {
    lp += std::log((n - k + 1.0) / k) + log_odds;
    pmf.push_back(std::exp(lp));
    // the ratio P(k + 1) / P(k) falls in k; past the mode the rest is a geometric series
    const double r = (n - k) / (k + 1.0) * std::exp(log_odds);
    if (r < 1.0) {
      const double rest = pmf.back() * r / (1.0 - r);
      if (rest <= tail) return rest;
    }
    if (pmf.size() > kCountMaxTerms) return std::numeric_limits<double>::infinity();
  }
  return 0.0;  // k reached n: nothing dropped
}

// total <- the law of (the sum total stood for) + Bin(n, p): the binomial
// truncated where its rest is below `tail`, the product truncated at
// kCountMaxTerms, and both rests added to `dropped` (charged in full by the
// callers); false where the binomial alone is longer than kCountMaxTerms.
inline bool add_binomial(std::vector<double>& total, double n, double p, double tail, double& dropped) {
  std::vector<double> one, next;
  const double rest = binomial_pmf(n, p, one, tail);
  if (!std::isfinite(rest)) return false;
  dropped += rest;
  next.assign(std::min(total.size() + one.size() - 1, kCountMaxTerms), 0.0);
  for (std::size_t i = 0; i < total.size(); ++i)
    for (std::size_t j = 0; j < one.size(); ++j) {
      if (i + j < next.size()) {
        next[i + j] += total[i] * one[j];
      } else {
        dropped += total[i] * one[j];  // beyond the kept length: charged in full
      }
    }
  total.swap(next);
  return true;
}

// The law of K for the composition, or nullopt when a mechanism is not
// covered, E[K] > kCountMaxMean, or the composition has too many segments.
inline std::optional<SampledCountLaw> sampled_count_law(const Composition& c) {
  if (c.empty() || c.segments().size() > kCountMaxSegments) return std::nullopt;
  SampledCountLaw law;
  double mean = 0.0;
  std::vector<double> total{1.0};
  for (const auto& s : c.segments()) {
    double p, m;
    if (!sampled_weight_and_reach(*s.mechanism, p, m)) return std::nullopt;
    law.m = std::max(law.m, m);
    mean += s.count * p;
    if (!(mean <= kCountMaxMean)) return std::nullopt;
    law.log_w0 += p >= 1.0 ? -std::numeric_limits<double>::infinity() : s.count * std::log1p(-p);
    if (!add_binomial(total, s.count, p, kCountTail, law.tail)) return std::nullopt;
  }
  if (!(law.m > 0.0)) return std::nullopt;  // P = Q: nothing to bound
  law.w_some = -std::expm1(law.log_w0);
  if (!(law.w_some > 0.0)) return std::nullopt;
  total[0] = 0.0;
  law.pk = std::move(total);
  return law;
}

// sum_{k >= 1} P(K = k) delta_G(e; sqrt(k) m) + the tail, widened for rounding.
inline double count_sum(const SampledCountLaw& law, double e) {
  double s = 0.0;
  for (std::size_t k = 1; k < law.pk.size(); ++k)
    if (law.pk[k] > 0.0) s += law.pk[k] * gaussian_delta_upper(e, std::sqrt(static_cast<double>(k)) * law.m);
  // (and the absolute error of terms that fall among the subnormals, where
  // the relative widening does not reach: a denormal each, doubled)
  const double subnormal = 2.0 * static_cast<double>(law.pk.size() + 1) * std::numeric_limits<double>::denorm_min();
  return std::min(1.0, (s + law.tail) * (1.0 + 1e-9) + subnormal);
}

}  // namespace detail

// The sampled-count bound on delta(eps) for one ordering, from the law of K.
inline double sampled_count_delta(const detail::SampledCountLaw& law, Ordering o, double eps) {
  if (o == Ordering::Remove) {
    const double log_beta = detail::log1p_expm1_over(eps, law.w_some);
    return detail::count_sum(law, log_beta);
  }
  if (eps + law.log_w0 >= 0.0) return 0.0;  // alpha w0 >= 1
  const double g = -std::expm1(eps + law.log_w0);
  const double log_beta = eps + std::log(law.w_some) - std::log(g);
  return std::min(1.0, g / law.w_some * detail::count_sum(law, std::max(0.0, log_beta)));
}

inline std::optional<double> sampled_count_delta(const Composition& c, Ordering o, double eps) {
  detail::require(std::isfinite(eps) && eps >= 0.0 && eps <= 1e3, "eps must be finite and in [0, 1000], got " + detail::fmt(eps));
  const auto law = detail::sampled_count_law(c);
  if (!law) return std::nullopt;
  return sampled_count_delta(*law, o, eps);
}

// The smallest eps the sampled-count bound certifies at delta, for one
// ordering (the bound falls in eps): 0 if it holds at eps = 0, nullopt if not
// even at eps = kCountEpsMax.  The search is not stopped at eps = 1000 (the
// largest eps the delta functions take): at sigma 0.01 one step's eps reaches
// 5409 at delta 1e-5 and 8400 at delta 1e-300, and this is its exact curve.  The answer is the safe end of the final bracket, so
// sampled_count_delta(answer) <= delta exactly.
inline std::optional<double> sampled_count_epsilon(const detail::SampledCountLaw& law, Ordering o, double delta) {
  const double log_delta = std::log(delta);
  auto f = [&](double eps) {
    const double d = sampled_count_delta(law, o, eps);
    return (d > 0.0 ? std::log(d) : -745.0) - log_delta;
  };
  const double f0 = f(0.0);
  if (f0 <= 0.0) return 0.0;
  const auto b = detail::expand_bracket(
      f, detail::Bracket{0.0, 1.0 / 64.0, f0, f(1.0 / 64.0)},
      [](double hi, double) {
        return hi >= detail::kCountEpsMax ? std::nullopt : std::optional<double>(std::min(4.0 * hi, detail::kCountEpsMax));
      },
      [](double v) { return v > 0.0; });
  if (!b) return std::nullopt;
  if (b->fhi == 0.0) return b->hi;
  auto tol = [](double x, double y) { return std::fabs(y - x) <= 1e-11 * std::max(std::fabs(x), std::fabs(y)); };
  // f(lo) > 0 >= f(hi) throughout, so the upper end is the safe one; checked, as it costs one evaluation
  const double e = detail::solve_bracket(f, *b, tol, 100, detail::End::Upper);
  return f(e) <= 0.0 ? e : b->hi;
}

inline std::optional<double> sampled_count_epsilon(const Composition& c, Ordering o, double delta) {
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  const auto law = detail::sampled_count_law(c);
  if (!law) return std::nullopt;
  return sampled_count_epsilon(*law, o, delta);
}

}  // namespace edgeworth
