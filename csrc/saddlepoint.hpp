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
#include <stdexcept>

#include <boost/math/tools/toms748_solve.hpp>

#include "cgf.hpp"
#include "expansions.hpp"

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
};

// Within this distance (|u| = |w - w_mean| sqrt(G'')) of a tail's own mean the
// Lugannani-Rice terms 1/u - 1/r and 1/r^3 - 1/u^3 cancel catastrophically;
// there the order-2 Edgeworth tail at the mean is accurate and is used.
constexpr double kNearMean = 0.3;

inline TiltedPoint tilted_point(const Composition& c, Ordering o, double w) {
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
      const TiltedCumulants m = loss_cgf(c, o, Loss::Y, 0.0, 4);
      std::array<double, 6> k{};
      for (int j = 1; j <= 4; ++j) k[j] = m.derivative[j];
      py = edgeworth_scaled_sf(eps, k, 2);
    } else {
      py = 0.5 * std::erfc(ry / std::sqrt(2.0)) + std::exp(log_phi_ry) * lr_bracket(ry, uy, l3, l4);
    }
    double px_scaled;  // e^eps P(S_X > eps)
    if (u < kNearMean) {
      const TiltedCumulants m = loss_cgf(c, o, Loss::X, 0.0, 4);
      std::array<double, 6> k{};
      for (int j = 1; j <= 4; ++j) k[j] = m.derivative[j];
      px_scaled = edgeworth_scaled_sf(eps, k, 2, eps);
    } else {
      px_scaled = std::exp(eps + log_normal_sf(r)) + std::exp(log_phi_ry) * lr_bracket(r, u, l3, l4);
    }
    delta = py - px_scaled;
  }
  return {w, eps, delta, l3};
}

// Measured against dp_accounting's PLD (tests/test_tilted.py): with
// |lambda_3| <= 0.65 at the saddle point the eps error is below 0.05 %; at
// 1.6 it reaches 1 to 4 %, and with few sampled steps in all (q T ~ 10,
// lambda_3 ~ 20) a single saddle point cannot describe the tilted law at all.
constexpr double kMaxSkewness = 1.0;

inline const TiltedPoint& check_reliable(const TiltedPoint& p) {
  if (!(std::fabs(p.skewness) <= kMaxSkewness))
    throw std::domain_error("the tilted (saddle-point) estimate is unreliable here: the tilted privacy loss has "
                            "skewness " + fmt(p.skewness) + " at the saddle point (reliable up to " +
                            fmt(kMaxSkewness) + "; typical with few sampled steps in all, q * steps ~ 10); "
                            "use method='certified'");
  return p;
}

// The saddle point w of G'(w) = eps, by bracket expansion and TOMS748.
inline double saddle_point(const Composition& c, Ordering o, double eps) {
  auto f = [&](double w) { return loss_cgf(c, o, Loss::X, w, 1).derivative[1] - eps; };
  double lo = 0.0, flo = f(0.0);  // G'(0) = E[S_X] < 0 <= eps
  double hi = 1.0, fhi = f(1.0);
  while (fhi < 0.0) {
    lo = hi;
    flo = fhi;
    hi *= 2.0;
    if (hi > 1e9) throw std::domain_error("no saddle point below w = 1e9 for eps = " + fmt(eps));
    fhi = f(hi);
  }
  if (flo >= 0.0) return lo;
  std::uintmax_t iters = 100;
  auto tol = [](double a, double b) { return std::fabs(b - a) <= 1e-12 * std::max(1.0, std::fabs(a)); };
  const auto br = boost::math::tools::toms748_solve(f, lo, hi, flo, fhi, tol, iters);
  return 0.5 * (br.first + br.second);
}

}  // namespace detail

// Saddle-point estimate of delta(eps) for one ordering.
inline double tilted_delta(const Composition& c, Ordering o, double eps) {
  detail::require(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got " + detail::fmt(eps));
  return detail::check_reliable(detail::tilted_point(c, o, detail::saddle_point(c, o, eps))).delta;
}

// Saddle-point estimate of eps(delta) for one ordering: solved on the saddle
// point w itself (eps(w) = G'(w) is increasing), so each step costs one CGF
// evaluation and no inner root.
inline double tilted_epsilon(const Composition& c, Ordering o, double delta) {
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  const double w0 = detail::saddle_point(c, o, 0.0);  // the point where eps = 0
  auto g = [&](double w) {
    const double d = detail::tilted_point(c, o, w).delta;
    return d > 0.0 ? std::log(d / delta) : -745.0;
  };
  const double g0 = g(w0);
  if (g0 <= 0.0) return detail::check_reliable(detail::tilted_point(c, o, w0)), 0.0;
  double lo = w0, glo = g0, hi = std::max(1.0, 2.0 * w0), ghi = g(hi);
  while (ghi > 0.0) {
    lo = hi;
    glo = ghi;
    hi *= 2.0;
    if (hi > 1e9) throw std::domain_error("the tilted estimate of delta stays above " + detail::fmt(delta));
    ghi = g(hi);
  }
  std::uintmax_t iters = 100;
  auto tol = [](double a, double b) { return std::fabs(b - a) <= 1e-12 * std::max(1.0, std::fabs(a)); };
  const auto br = boost::math::tools::toms748_solve(g, lo, hi, glo, ghi, tol, iters);
  return detail::check_reliable(detail::tilted_point(c, o, br.second)).eps;
}

}  // namespace edgeworth
