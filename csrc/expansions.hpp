// Edgeworth expansions of the privacy-loss distributions and the point
// estimate of delta(eps) they give: Wang, Gao, Zhang, Shen, Su, "Analytical
// composition of differential privacy via the Edgeworth accountant",
// arXiv 2206.04236.
//
// With z = (x - kappa_1) / sqrt(kappa_2), lambda_r = kappa_r / kappa_2^(r/2)
// and probabilists' Hermite polynomials He_k:
//   order 1: F(x) ~ Phi(z) - phi(z) lambda_3/6 He_2(z)
//   order 2: ... - phi(z) [lambda_4/24 He_3(z) + lambda_3^2/72 He_5(z)]
//   order 3: ... - phi(z) [lambda_5/120 He_4(z) + lambda_3 lambda_4/144 He_6(z)
//                          + lambda_3^3/1296 He_8(z)]
// and delta(eps) = (1 - F_Y(eps)) - e^eps (1 - F_X(eps)).
// These are *estimates*, not bounds.
#pragma once

#include <array>
#include <cmath>
#include <stdexcept>

#include "cgf.hpp"

namespace edgeworth {

namespace detail {

constexpr double kLogSqrt2Pi = 0.91893853320467274178;

// log(1 - Phi(z)), accurate in the far upper tail.
inline double log_normal_sf(double z) {
  if (z < 35.0) return std::log(0.5 * std::erfc(z / std::sqrt(2.0)));
  const double iz2 = 1.0 / (z * z);
  return -0.5 * z * z - std::log(z) - kLogSqrt2Pi + std::log1p(-iz2 * (1.0 - 3.0 * iz2 * (1.0 - 5.0 * iz2)));
}

// The bracketed correction sum of the expansion at z: 1 - F = Q(z) + phi(z) * correction.
inline double edgeworth_correction(double z, const std::array<double, 6>& k, int order) {
  const double l3 = k[3] / std::pow(k[2], 1.5);
  const double z2 = z * z;
  const double he2 = z2 - 1.0;
  double c = l3 / 6.0 * he2;
  if (order >= 2) {
    const double l4 = k[4] / (k[2] * k[2]);
    const double he3 = z * (z2 - 3.0);
    const double he5 = z * (z2 * z2 - 10.0 * z2 + 15.0);
    c += l4 / 24.0 * he3 + l3 * l3 / 72.0 * he5;
    if (order >= 3) {
      const double l5 = k[5] / std::pow(k[2], 2.5);
      const double he4 = z2 * z2 - 6.0 * z2 + 3.0;
      const double he6 = z2 * z2 * z2 - 15.0 * z2 * z2 + 45.0 * z2 - 15.0;
      const double he8 = z2 * z2 * z2 * z2 - 28.0 * z2 * z2 * z2 + 210.0 * z2 * z2 - 420.0 * z2 + 105.0;
      c += l5 / 120.0 * he4 + l3 * l4 / 144.0 * he6 + l3 * l3 * l3 / 1296.0 * he8;
    }
  }
  return c;
}

}  // namespace detail

// exp(log_scale) * (1 - F_hat(x)) for the Edgeworth expansion of the given
// order, computed so that exp(log_scale) never multiplies an underflowed tail.
inline double edgeworth_scaled_sf(double x, const std::array<double, 6>& k, int order, double log_scale = 0.0) {
  detail::require(order >= 1 && order <= 3, "order must be 1, 2 or 3");
  detail::require(k[2] > 0.0, "kappa_2 must be > 0");
  const double z = (x - k[1]) / std::sqrt(k[2]);
  const double base = std::exp(log_scale + detail::log_normal_sf(z));
  const double dens = std::exp(log_scale - 0.5 * z * z - detail::kLogSqrt2Pi);
  return base + dens * detail::edgeworth_correction(z, k, order);
}

// The Edgeworth point estimate of delta(eps) for one ordering's cumulants.
inline double edgeworth_delta(const LossCumulants& lc, double eps, int order) {
  const double d = edgeworth_scaled_sf(eps, lc.y, order) - edgeworth_scaled_sf(eps, lc.x, order, eps);
  if (!std::isfinite(d)) throw std::runtime_error("Edgeworth delta is not finite at eps = " + detail::fmt(eps));
  return d;
}

}  // namespace edgeworth
