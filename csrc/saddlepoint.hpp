// The tilted (saddle-point) expansion of delta(eps): the Edgeworth expansion
// applied to the exponentially tilted privacy-loss sum, in the
// Lugannani-Rice form with Daniels' second-order correction (Daniels 1954,
// 1987; Lugannani and Rice 1980; Alghamdi et al., arXiv 2208.09595, for DP).
//
// For one ordering, with G(w) = log E[e^(w S_X)] the CGF of the summed loss
// S_X, G_Y(z) = G(z + 1), and the saddle point w of G'(w) = eps:
//   P(S > x) ~ 1 - Phi(r) + phi(r) [1/u - 1/r + (1/u)(l4/8 - 5 l3^2/24)
//                                   - l3/(2u^2) - 1/u^3 + 1/r^3],
//   r = sign(w) sqrt(2(w x - G(w))),  u = w sqrt(G''(w)),
//   l3 = G'''/G''^1.5, l4 = G''''/G''^2 at the saddle point,
// for S_X at w and for S_Y at w - 1 (the same point of the same curve), and
//   delta(eps) = P(S_Y > eps) - e^eps P(S_X > eps).
// Its error is relative, not additive, so it stays accurate at tiny delta,
// and its cost does not depend on the number of steps.  It is an ESTIMATE.
#pragma once

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <array>
#include <stdexcept>
#include <string>


#include "cgf.hpp"
#include "conditioned.hpp"
#include "expansions.hpp"
#include "roots.hpp"

namespace edgeworth {

namespace detail {

// Mills ratio R(r) = (1 - Phi(r)) / phi(r), for r >= 0 (continued fraction
// for large r, where 1 - Phi underflows long before R does).
inline double mills_ratio(double r) {
  if (r < 6.0) return 0.5 * std::erfc(r / std::sqrt(2.0)) / std::exp(-0.5 * r * r - kLogSqrt2Pi);
  double f = r;  // Laplace: R = 1 / (r + 1 / (r + 2 / (r + 3 / ...)))
  for (int k = 60; k >= 1; --k) f = r + k / f;
  return 1.0 / f;
}

// The bracket of the Lugannani-Rice formula without the Q(r) part:
// P(S > x) = Q(r) + phi(r) * lr_bracket(r, u, l3, l4).
inline double lr_bracket(double r, double u, double l3, double l4) {
  return 1.0 / u - 1.0 / r + (l4 / 8.0 - 5.0 * l3 * l3 / 24.0) / u - l3 / (2.0 * u * u) - 1.0 / (u * u * u) +
         1.0 / (r * r * r);
}

// One point of the tilted curve of one ordering: eps(w) = G'(w) and the
// saddle-point estimate of delta at that eps.
struct TiltedPoint {
  double w, eps, delta;
  double skewness;  // lambda_3 of the tilted sum at the saddle point
  double kurtosis;  // lambda_4 there
};

// Within this distance (|u| = |w - w_mean| sqrt(G'')) of a tail's own mean the
// Lugannani-Rice terms 1/u - 1/r and 1/r^3 - 1/u^3 cancel catastrophically;
// there the order-2 Edgeworth tail at the mean is accurate and is used.
constexpr double kNearMean = 0.3;

// The cumulants of S_X and S_Y at their own means (tilt 0), which
// tilted_point needs near the mean at every w: computed once per search.
class MeanCumulants {
 public:
  MeanCumulants(const Composition& c, Ordering o) : c_(c), o_(o) {}
  const std::array<double, 6>& of(Loss w) {
    auto& slot = w == Loss::X ? x_ : y_;
    if (!slot) {
      const TiltedCumulants m = loss_cgf(c_, o_, w, 0.0, 4);
      std::array<double, 6> k{};
      for (int j = 1; j <= 4; ++j) k[j] = m.derivative[j];
      slot = k;
    }
    return *slot;
  }

 private:
  const Composition& c_;
  Ordering o_;
  std::optional<std::array<double, 6>> x_, y_;
};

inline TiltedPoint tilted_point(const Composition& c, Ordering o, double w, MeanCumulants& mean) {
  const TiltedCumulants g = loss_cgf(c, o, Loss::X, w, 4);
  const double g2 = g.derivative[2];
  if (!(g2 > 0.0) || !std::isfinite(g2))
    throw std::domain_error("the tilted expansion is undefined here: G''(w) is not a positive finite double");
  const double eps = g.derivative[1];
  const double l3 = g.derivative[3] / std::pow(g2, 1.5), l4 = g.derivative[4] / (g2 * g2);
  const double sq = std::sqrt(g2);
  // r^2/2 = w eps - G(w) for S_X;  r_Y^2/2 = (w - 1) eps - G(w) = r^2/2 - eps for S_Y.
  const double half_r2 = std::max(0.0, w * eps - g.log_mgf);
  const double half_ry2 = std::max(0.0, half_r2 - eps);
  const double r = std::copysign(std::sqrt(2.0 * half_r2), w);
  const double ry = std::copysign(std::sqrt(2.0 * half_ry2), w - 1.0);
  const double u = w * sq, uy = (w - 1.0) * sq;
  const double log_phi_ry = -half_ry2 - kLogSqrt2Pi;  // log phi(r_Y) = eps + log phi(r)

  double delta;
  if (uy >= kNearMean) {
    // Both saddles well above their means: delta = phi(r_Y) [R(r_Y) + B_Y - R(r) - B_X].
    const double ty = mills_ratio(ry) + lr_bracket(ry, uy, l3, l4);
    const double tx = mills_ratio(r) + lr_bracket(r, u, l3, l4);
    delta = std::exp(log_phi_ry) * (ty - tx);
  } else {
    // eps is near or below E[S_Y]: delta is large; P(S_Y > eps) from the
    // Edgeworth tail at the mean of S_Y where the saddle is close to it.
    double py;
    if (uy > -kNearMean) {
      py = edgeworth_scaled_sf(eps, mean.of(Loss::Y), 2);
    } else {
      py = 0.5 * std::erfc(ry / std::sqrt(2.0)) + std::exp(log_phi_ry) * lr_bracket(ry, uy, l3, l4);
    }
    double px_scaled;  // e^eps P(S_X > eps)
    if (u < kNearMean) {
      px_scaled = edgeworth_scaled_sf(eps, mean.of(Loss::X), 2, eps);
    } else {
      px_scaled = std::exp(eps + log_normal_sf(r)) + std::exp(log_phi_ry) * lr_bracket(r, u, l3, l4);
    }
    delta = py - px_scaled;
  }
  return {w, eps, delta, l3, l4};
}

// Measured against dp_accounting's PLD (tests/test_tilted.py): with
// |lambda_3| <= 0.65 at the saddle point the eps error is below 0.05 %; at
// 1.6 it reaches 1 to 4 %, and with few sampled steps in all (q T ~ 10,
// lambda_3 ~ 20) a single saddle point cannot describe the tilted law at all.
// An estimate of delta that is not positive is no estimate either.
constexpr double kMaxSkewness = 1.0;

inline bool is_reliable(const TiltedPoint& p) { return std::fabs(p.skewness) <= kMaxSkewness && p.delta > 0.0; }

// The remove ordering has an exact fallback (conditioned.hpp), so it takes
// the single saddle point only where that is accurate: lambda_3 in
// [-0.1, 0.65] (its loss is right-skewed; a left-skewed tilted law means the
// tilt sits between two modes: a single step at q = 0.1 and delta = 1e-8 is
// 0.7 % off at lambda_3 = -0.45) and lambda_4 >= -0.5 (a strongly platykurtic
// tilted law has two modes: a single step at q = 0.1 and delta = 1e-5 is 1 %
// off at lambda_3 = 0.34, lambda_4 = -0.97).  Where the fallback declines,
// the reliable range still answers.
constexpr double kAccurateSkewness = 0.65, kMinRemoveSkewness = -0.1, kMinKurtosis = -0.5;

inline bool is_accurate_remove(const TiltedPoint& p) {
  return is_reliable(p) && p.skewness <= kAccurateSkewness && p.skewness >= kMinRemoveSkewness &&
         p.kurtosis >= kMinKurtosis;
}

inline const TiltedPoint& check_reliable(const TiltedPoint& p) {
  if (is_reliable(p)) return p;
  const std::string why =
      !(std::fabs(p.skewness) <= kMaxSkewness)
          ? "the tilted privacy loss has skewness " + fmt(p.skewness) + " at the saddle point (reliable up to " +
                fmt(kMaxSkewness) + "; typical with few sampled steps in all, q * steps ~ 10)"
          : "its delta at eps = " + fmt(p.eps) + " is " + fmt(p.delta) + ", not positive";
  throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: " + why + "; use method='certified'");
}

// The saddle point w of G'(w) = eps, by bracket expansion and TOMS748, to
// rtol relative (absolute below w = 1).
inline double saddle_point(const Composition& c, Ordering o, double eps, double rtol = 1e-12) {
  auto f = [&](double w) { return loss_cgf(c, o, Loss::X, w, 1).derivative[1] - eps; };
  const double f0 = f(0.0);  // G'(0) = E[S_X] < 0 <= eps
  const auto b = expand_bracket(
      f, Bracket{0.0, 1.0, f0, f(1.0)},
      [](double hi, double) { return 2.0 * hi > 1e9 ? std::nullopt : std::optional<double>(2.0 * hi); },
      [](double v) { return v < 0.0; });
  if (!b) throw std::domain_error("no saddle point below w = 1e9 for eps = " + fmt(eps));
  if (b->flo >= 0.0) return b->lo;
  auto tol = [&](double x, double y) { return std::fabs(y - x) <= rtol * std::max(1.0, std::fabs(x)); };
  return solve_bracket(f, *b, tol, 100, End::Middle);
}

// The add ordering's privacy loss is bounded above: there S = -sum l(W_i)
// with W_i ~ P and l >= inf l (log(1 - q) for the subsampled Gaussian), so
// S <= A = -sum n inf l and delta_add(eps) = 0 for every eps >= A (infinite
// where some mechanism's loss is unbounded below, e.g. q = 1 for a Gaussian).
inline double add_loss_ceiling(const Composition& c) {
  double a = 0.0;
  for (const auto& seg : c.segments()) {
    const double inf_l = seg.mechanism->pllr_infimum();
    if (!std::isfinite(inf_l)) return std::numeric_limits<double>::infinity();
    a -= seg.count * inf_l;
  }
  return a;
}

// A lower bound on the remove ordering's delta(eps) from single steps: with
// F = sum n log(1 - q) (each l >= log(1 - q)), S >= M + F where M is the
// largest single-step loss, and h(s) = (1 - e^(eps - s))_+ is increasing, so
//   delta(eps) >= E[h(M + F)] = integral_{v0}^inf e^(v0 - v) P(M >= v) dv,
//   v0 = eps - F,  P(M >= v) = 1 - prod_segments (1 - Q(l >= v))^n
// (exact for a single step, up to F).  0 where some segment has q = 1 or is
// not a subsampled Gaussian.
inline double remove_delta_floor(const Composition& c, double eps) {
  double floor = 0.0;
  for (const auto& seg : c.segments()) {
    const auto g = seg.mechanism->subsampled_gaussian_parameters();
    if (!g || !(g->q < 1.0)) return 0.0;
    floor += seg.count * std::log1p(-g->q);
  }
  const double v0 = eps - floor;  // > 0
  auto f = [&](double y) -> Vec<1> {  // y = v - v0
    double log_none = 0.0;              // log P(M < v)
    for (const auto& seg : c.segments()) {
      const SubsampledGaussianParameters g = *seg.mechanism->subsampled_gaussian_parameters();
      const double xv = seg.mechanism->gaussian_reference()->pllr_inverse(v0 + y), mu = 1.0 / g.sigma;
      const double p = (1.0 - g.q) * 0.5 * std::erfc(xv / std::sqrt(2.0)) +
                       g.q * 0.5 * std::erfc((xv - mu) / std::sqrt(2.0));
      log_none += seg.count * std::log1p(-p);
    }
    return {std::exp(-y) * -std::expm1(log_none)};
  };
  return integrate_adaptive<1>(f, {0.0, 0.25, 1.0, 4.0, 16.0, 64.0}, 1e-6).value[0];
}

// The expected number of sampled steps in all (sum of q * steps; for a
// mixture, the weight off its zero mean), or +inf where a mechanism is not
// subsampled.  Below kMinSampledForSaddle the privacy-loss sum is a rare
// jump on a nearly flat law, which no single saddle point describes, even
// where its skewness looks harmless: on 300 random configurations the single
// saddle point was 1 to 21 % low at q * steps from 9e-5 to 0.024 (sigma
// 9.6363, q 1.3987e-4, 2 steps, delta 3.16e-9: eps 5.89e-5 where the truth
// is 7.63e-5), and within 0.5 % wherever q * steps >= 0.03.
constexpr double kMinSampledForSaddle = 1.0;

inline double expected_sampled_steps(const Composition& c) {
  double n = 0.0;
  for (const auto& seg : c.segments()) {
    const auto p = seg.mechanism->sampled_weight();
    if (!p) return std::numeric_limits<double>::infinity();
    n += *p * seg.count;
  }
  return n;
}

// (where the characteristic-function inversion cannot take over, a mechanism
// off the Gaussian reference such as the Laplace mechanism, the single saddle
// point still answers where it is reliable)
inline bool few_sampled_steps(const Composition& c) {
  if (!(expected_sampled_steps(c) < kMinSampledForSaddle)) return false;
  for (const auto& seg : c.segments())
    if (seg.mechanism->gaussian_reference() == nullptr) return false;
  return true;
}

[[noreturn]] inline void throw_few_sampled(const Composition& c) {
  throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: few sampled steps in all (" +
                          fmt(expected_sampled_steps(c)) + " expected, below " + fmt(kMinSampledForSaddle) +
                          "), where no single saddle point describes the privacy loss");
}

// The single-step floor (remove_delta_floor, a rigorous lower bound on the
// remove ordering's delta) as a check on a single saddle point: true where
// the floor at eps exceeds the estimated delta d (beyond the floor's
// quadrature tolerance), so that the estimate is certainly too low.  With
// few sampled steps in all the saddle point can pass its skewness check and
// still miss the one-step jump: sigma 9.6363, q 1.3987e-4, 2 steps,
// delta 3.16e-9 gave eps 0 for the remove ordering, whose truth is 7.63e-5.
inline bool remove_floor_exceeds(const Composition& c, double eps, double d) {
  constexpr double kFloorRtol = 1e-4;  // above the floor's quadrature tolerance (1e-6 relative)
  return remove_delta_floor(c, eps) > d * (1.0 + kFloorRtol);
}

[[noreturn]] inline void throw_below_floor(const Composition& c, double eps) {
  throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: at eps = " + fmt(eps) +
                          " it is below the single-step lower bound on delta (" + fmt(remove_delta_floor(c, eps)) +
                          ": few sampled steps in all, one step's jump dominates)");
}

// The remove ordering's exact fallback (conditioned.hpp) is accepted only
// where its own error estimate is this small relative to delta.
constexpr double kInversionRtol = 1e-5;

inline RemoveInversion::Value checked(const RemoveInversion::Value& v, double eps) {
  if (!(v.error <= kInversionRtol * v.delta))
    throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: the Laplace inversion of the "
                            "remove ordering reaches only a relative accuracy of " + fmt(v.error / v.delta) +
                            " at eps = " + fmt(eps) + "; use method='certified'");
  return v;
}

// The conditioned Laplace inversion of the remove ordering: the flat part
// set aside as far as an all-flat bound at split_eps below `threshold` allows,
// and the line through the conditioned saddle point for line_eps.
inline std::unique_ptr<RemoveInversion> remove_inversion(const Composition& c, double split_eps, double threshold,
                                                         double line_eps,
                                                         long budget = RemoveInversion::kMaxEvaluations) {
  const FlatSplit split(c, choose_offset(c, split_eps, threshold));
  // (only where the line search starts: the CGF near a large saddle point can
  // be so steep that 1e-12 costs ~50 evaluations, 14 ms at q = 1e-7, sigma 10)
  const double hint = saddle_point(c, Ordering::Remove, line_eps, 1e-2) - 1.0;
  const InversionLine line = inversion_line(split, line_eps, hint);
  return std::make_unique<RemoveInversion>(c, line.c, line.saddle, split, budget);
}

// delta(eps) of the remove ordering by the conditioned Laplace inversion.
inline double inverted_remove_delta(const Composition& c, double eps, double w_saddle) {
  // The Chernoff bound of the whole law (>= delta) scales the all-flat threshold.
  const double cs = w_saddle - 1.0;
  const double chernoff = cs > 0.0 ? std::exp(loss_cgf(c, Ordering::Remove, Loss::Y, cs, 0).log_mgf - cs * eps) : 1.0;
  auto inv = remove_inversion(c, eps, 1e-13 * chernoff, eps);
  return checked(inv->delta(eps, true), eps).delta;
}

// eps(delta) of the remove ordering by the conditioned Laplace inversion.
// The bracket starts at `guess` (the unreliable single-saddle eps, if it is
// below the certified eps) or else at the certified eps (a Chernoff bound,
// bounds.hpp, above the answer), and moves along the slope of log delta
// (about minus the conditioned saddle point).
// One inversion serves the whole search (its Psi(u) nodes are cached); it is
// set up again only where its own error estimate says it has become
// inaccurate, or below the eps its flat part was set aside for, where the
// all-flat bound says that is no longer negligible.
inline double inverted_remove_epsilon(const Composition& c, double delta, double guess) {
  constexpr double kRebuildRtol = 1e-5, kFlatRtol = 1e-9;
  std::unique_ptr<RemoveInversion> inv;
  double split_eps = 0.0, line_eps = 0.0;
  long spent = 0;  // the work budget is for the whole search
  auto build = [&](double at_split, double at_line) {
    if (inv) spent += inv->evaluations();
    inv = remove_inversion(c, at_split, 1e-10 * delta, at_line, RemoveInversion::kMaxEvaluations - spent);
    split_eps = at_split;
    line_eps = at_line;
  };
  auto at = [&](double eps) {
    if (!inv || (eps < split_eps && !(inv->flat_bound(eps) <= kFlatRtol * delta))) build(0.8 * eps, eps);
    RemoveInversion::Value v = inv->delta(eps, false);
    if (!(v.error <= kRebuildRtol * std::max(v.delta, delta)) && std::fabs(eps - line_eps) > 0.05 * eps) {
      build(std::min(split_eps, eps), eps);
      v = inv->delta(eps, false);
    }
    return v;
  };
  auto g = [&](double eps) {
    const double d = at(eps).delta;
    return d > 0.0 ? std::log(d / delta) : -745.0;
  };
  const double cert = certified_epsilon(c, Ordering::Remove, delta).value;
  if (!(cert > 0.0)) return 0.0;  // the bound itself says eps = 0
  // A lower bound on the answer from the single-step floor of delta (tight
  // when one large step dominates, 0 when many small ones do).
  double floor_eps = 0.0;
  if (remove_delta_floor(c, 0.0) > delta) {
    double a = 0.0, b = cert;
    for (int i = 0; i < 40 && b - a > 1e-3 * b; ++i) {
      const double m = 0.5 * (a + b);
      (remove_delta_floor(c, m) > delta ? a : b) = m;
    }
    floor_eps = a;
  }
  // Start from the single-saddle root where it is sane, else between the
  // bounds; set the flat part aside down to the lower bound at once.
  const double start = (guess > 0.0 && guess < cert) ? guess : std::sqrt(std::max(floor_eps, 0.05 * cert) * cert);
  build(0.9 * std::min(start, std::max(floor_eps, 0.05 * cert)), start);
  // Bracket the root stepping along log delta: Newton with the slope -saddle
  // first, then secants, each step 10 % long so as to cross the root.
  double lo = start, glo = g(lo), hi = start, ghi = glo;
  double x_prev = start, g_prev = glo;
  bool have_prev = false;
  auto step_length = [&](double x, double gx) {
    double slope = inv->saddle();
    if (have_prev && x != x_prev) {
      const double secant = -(gx - g_prev) / (x - x_prev);
      if (secant > 0.0) slope = secant;
    }
    return 1.1 * std::fabs(gx) / std::max(slope, 1e-300);
  };
  if (glo > 0.0) {  // step up (only from a guess below the bound)
    while (ghi > 0.0) {
      const double next = std::min(cert, std::min(4.0 * hi, std::max(1.01 * hi, hi + step_length(hi, ghi))));
      x_prev = hi;
      g_prev = ghi;
      have_prev = true;
      lo = hi;
      glo = ghi;
      hi = next > lo ? next : 1.05 * lo;  // past the bound only through quadrature error
      ghi = g(hi);
      if (hi > 2.0 * cert) throw std::domain_error("the tilted estimate of delta stays above " + fmt(delta));
    }
  } else {  // step down
    while (glo <= 0.0) {
      const double next = std::max(0.25 * lo, std::min(0.99 * lo, lo - step_length(lo, glo)));
      x_prev = lo;
      g_prev = glo;
      have_prev = true;
      hi = lo;
      ghi = glo;
      lo = next;
      if (lo < 1e-9 * cert) {
        lo = 0.0;
        glo = g(0.0);
        if (glo <= 0.0) return checked(inv->delta(0.0, true), 0.0), 0.0;
        break;
      }
      glo = g(lo);
    }
  }
  auto tol = [](double a, double b) { return std::fabs(b - a) <= 1e-10 * std::max(1e-3, std::fabs(a)); };
  const double eps = solve_bracket(g, Bracket{lo, hi, glo, ghi}, tol, 100, End::Middle);
  checked(inv->delta(eps, true), eps);
  return eps;
}

}  // namespace detail

// Saddle-point estimate of delta(eps) for one ordering.  Where the single
// saddle point is unreliable, the remove ordering falls back to the exact
// conditioned Laplace inversion (conditioned.hpp); the add ordering answers
// exactly 0 above the ceiling of its loss, and declines below it.
inline double tilted_delta(const Composition& c, Ordering o, double eps, bool* conditioned = nullptr) {
  detail::require(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got " + detail::fmt(eps));
  if (conditioned) *conditioned = false;
  if (o == Ordering::Add && eps >= detail::add_loss_ceiling(c)) return 0.0;
  const double w = detail::saddle_point(c, o, eps);
  detail::MeanCumulants mean(c, o);
  const detail::TiltedPoint p = detail::tilted_point(c, o, w, mean);
  const bool few = detail::few_sampled_steps(c);
  if (o != Ordering::Remove) {
    if (few) detail::throw_few_sampled(c);
    return detail::check_reliable(p).delta;
  }
  // (below the single-step floor the single saddle point is wrong however small its skewness)
  const bool above_floor = !detail::remove_floor_exceeds(c, eps, p.delta), single = above_floor && !few;
  if (detail::is_accurate_remove(p) && single) return p.delta;
  try {
    const double d = detail::inverted_remove_delta(c, eps, w);
    if (conditioned) *conditioned = true;
    return d;
  } catch (const std::domain_error&) {
    if (detail::is_reliable(p) && single) return p.delta;
    if (!above_floor) detail::throw_below_floor(c, eps);
    if (few) detail::throw_few_sampled(c);
    throw;
  }
}

// Saddle-point estimate of eps(delta) for one ordering: solved on the saddle
// point w itself (eps(w) = G'(w) is increasing), so each step costs one CGF
// evaluation and no inner root.  Where it is unreliable, the remove ordering
// falls back as in tilted_delta.  The add ordering's eps is at most the
// ceiling A of its loss; where its saddle point is unreliable but the remove
// ordering's eps provably exceeds A (its delta at A is above delta by the
// single-step lower bound), the add ordering cannot be the larger, and A (its
// upper bound) is returned so that the remove ordering decides the maximum
// over both; otherwise it declines.
inline double tilted_epsilon(const Composition& c, Ordering o, double delta, bool* conditioned = nullptr) {
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  if (conditioned) *conditioned = false;
  detail::MeanCumulants mean(c, o);
  const bool few = detail::few_sampled_steps(c);
  // A root of the remove ordering is trusted only where the estimate stays
  // sane a little above it: where the expansion breaks down, its delta can
  // dive through zero, and the root it then crosses is an artefact (at
  // sigma = 0.8, q = 1e-3, T = 1000, delta = 1e-5 it gave 0.167, truly 0.304).
  auto sane = [&](const detail::TiltedPoint& p) {
    if (!(p.delta > 0.0)) return false;
    if (!(p.eps > 0.0)) return true;
    const double eps2 = 1.25 * p.eps;
    try {
      const double d2 = detail::tilted_point(c, o, detail::saddle_point(c, o, eps2), mean).delta;
      return d2 > 0.0 && d2 < delta;
    } catch (const std::domain_error&) {
      return false;
    }
  };
  auto finish = [&](const detail::TiltedPoint& p, double eps) {
    if (o == Ordering::Remove) {
      // (an eps whose single-step floor of delta is above delta is too small:
      // the truth is larger, whatever the saddle point's skewness says)
      const bool above_floor = !detail::remove_floor_exceeds(c, eps, delta);
      const bool is_sane = sane(p) && above_floor, ok = is_sane && detail::is_reliable(p) && !few;
      if (ok && detail::is_accurate_remove(p)) return eps;
      try {
        const double e = detail::inverted_remove_epsilon(c, delta, is_sane ? eps : 0.0);  // an artefact is no guess
        if (conditioned) *conditioned = true;
        return e;
      } catch (const std::domain_error&) {
        if (ok) return eps;
        if (!above_floor) detail::throw_below_floor(c, eps);
        if (few) detail::throw_few_sampled(c);
        throw;
      }
    }
    if (detail::is_reliable(p) && !few) return eps;
    const double ceiling = detail::add_loss_ceiling(c);
    if (std::isfinite(ceiling) && detail::remove_delta_floor(c, ceiling) > delta) return ceiling;
    if (few) detail::throw_few_sampled(c);
    return detail::check_reliable(p), eps;
  };
  const double w0 = detail::saddle_point(c, o, 0.0);  // the point where eps = 0
  // (the smallest log(delta_est / delta) seen where the estimate is positive,
  // and whether it was seen to collapse to <= 0)
  double g_positive_min = std::numeric_limits<double>::infinity();
  bool collapsed = false;
  auto g = [&](double w) {
    const double d = detail::tilted_point(c, o, w, mean).delta;
    if (!(d > 0.0)) {
      collapsed = true;
      return -745.0;
    }
    g_positive_min = std::min(g_positive_min, std::log(d / delta));
    return std::log(d / delta);
  };
  const double g0 = g(w0);
  if (g0 <= 0.0) return finish(detail::tilted_point(c, o, w0, mean), 0.0);
  const double w1 = std::max(1.0, 2.0 * w0);
  const auto b = detail::expand_bracket(
      g, detail::Bracket{w0, w1, g0, g(w1)},
      [&](double hi, double ghi) {
        // Where the estimate of delta is above 1 it has broken down and no root
        // is near: larger strides up (the add ordering at sigma 0.1, q 1e-3, 1000
        // steps, delta 0.1 stays at 66 from w = 1 to 1e9, 30 doublings of 1.4 ms)
        const double next = hi * (ghi > -std::log(delta) ? 16.0 : 2.0);
        return next > 1e9 ? std::nullopt : std::optional<double>(next);
      },
      [](double v) { return v > 0.0; });
  if (!b) throw std::domain_error("the tilted estimate of delta stays above " + detail::fmt(delta));
  // Where the estimate collapses (delta <= 0) while every positive value
  // seen is still far above the target, the sign change is the collapse, not
  // a root (q = 1e-7, sigma = 10, delta = 1e-15: the estimate stays ~1.26e-7
  // from w = 1 to 3222, then turns negative), and the point found there is
  // not sane; converging on it to 1e-12 cost ~40 evaluations at huge tilts
  // (1 to 2 ms each), so the search stops once the bracket is 1 % wide there
  // (no sane point is found that way: the fallback below takes over, and it
  // does not start from that point).  "Far" is e^0.5 (1.65) times the target:
  // at 1e9 steps and delta = 1e-5 the estimate levels off at 2.5 times it
  // before it breaks down (into values above 1 as well as below 0), and the
  // search took 60 evaluations, 45 ms.
  auto tol = [&](double a, double b) {
    const double width = std::fabs(b - a);
    return width <= 1e-12 * std::max(1.0, std::fabs(a)) ||
           (collapsed && g_positive_min > 0.5 && width <= 1e-2 * std::max(1.0, std::fabs(a)));
  };
  const detail::TiltedPoint p = detail::tilted_point(c, o, detail::solve_bracket(g, *b, tol, 100, detail::End::Upper), mean);
  return finish(p, p.eps);
}

}  // namespace edgeworth
