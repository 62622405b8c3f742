// Certified upper bounds from the CGF: the optimal Chernoff bound on the
// hockey-stick divergence, optimised over a continuous order t > 0.
//
// For every y, (1 - e^(eps - y))_+ <= e^(t (y - eps)) t^t / (1 + t)^(1 + t)
// (maximise the left over y: the maximum sits at e^(eps - y) = t / (1 + t)).
// Taking E over S_Y = the summed PLLR under Q gives, for every t > 0,
//     delta(eps) = E[(1 - e^(eps - S_Y))_+] <= exp(G(t) - t eps + c(t)),
//     G(t) = log E[e^(t S_Y)] = sum_i n_i K_Y,i(t),
//     c(t) = t log t - (1 + t) log(1 + t),
// the conversion of Canonne, Kamath and Steinke (arXiv 2004.00010, Prop. 12)
// from Renyi DP of order alpha = t + 1.  Both G and c are convex, so
//   * log delta_bound(eps) = min_t [G(t) - t eps + c(t)] has a single
//     stationary point: G'(t) - eps - log(1 + 1/t) = 0 (increasing in t);
//   * eps_bound(delta) = min_t [G(t) + c(t) - log delta] / t is unimodal:
//     its derivative has the sign of h(t) = t G'(t) - G(t) + log(1 + t) + log delta,
//     and h' = t G''(t) >= 0.
// Any t gives a valid bound, so root-finding error costs tightness, never
// validity.  The quadrature error of G (estimated by Gauss-Kronrod, times a
// safety factor of 10, plus rounding) is added to the exponent: `margin`.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>


#include "roots.hpp"
#include "cgf.hpp"

namespace edgeworth {

struct Bound {
  double value = 0.0;          // eps or delta
  Ordering ordering = Ordering::Remove;
  double t = 0.0;              // optimal order t (Renyi order alpha = t + 1)
  double margin = 0.0;         // numerical safety margin added to the exponent
};

namespace detail {

inline double chernoff_c(double t) { return t * std::log(t) - (1.0 + t) * std::log1p(t); }

// The remove ordering's CGF at order t is K at the tilt s = 1 + t, rounded
// to a double; exact_order(t) = (1 + t) - 1 (exact for 1 + t >= 1/2) is the
// order whose tilt is exact, so that a bound evaluates its t where its CGF
// was evaluated (at t = 1e-9 the rounding of 1 + t moves t by 1e-7 relative,
// more than the CGF's error).
inline double exact_order(double t) { return (1.0 + t) - 1.0; }

inline double cgf_margin(const TiltedCumulants& g) {
  return 10.0 * g.log_mgf_error + 64.0 * std::numeric_limits<double>::epsilon() * (1.0 + std::fabs(g.log_mgf));
}

// Root of an increasing function phi on (0, inf), by bracket expansion from
// `start` (by factors `factor`) and TOMS748 to a relative width `rtol`.
// Returns the best t found (not necessarily the exact root: the callers
// evaluate their objective at it, which is valid anyway).  With
// stop_where_cgf_fails, a CGF that cannot be evaluated at the next t
// (std::runtime_error: its quadrature fails at t ~ 1e8 for sigma = 1e4, where
// the optimal order runs off because delta(eps) is below e^-1e7) ends the
// search at the last t that could be: any t is valid.
template <class F>
double increasing_root_in_t(const F& phi, double start = 1.0, double factor = 4.0, double rtol = 1e-7,
                            bool stop_where_cgf_fails = false) {
  constexpr double kTmin = 1e-12, kTmax = 1e12;
  double lo = start, hi = start;
  double flo = phi(start), fhi = flo;
  auto next = [&](double t, double& f) {  // false: the search stops before t
    if (!stop_where_cgf_fails) {
      f = phi(t);
      return true;
    }
    try {
      f = phi(t);
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  };
  if (flo < 0.0) {
    while (fhi < 0.0) {
      lo = hi;
      flo = fhi;
      hi *= factor;
      if (hi > kTmax || !next(hi, fhi)) return lo;
    }
  } else {
    while (flo > 0.0) {
      hi = lo;
      fhi = flo;
      lo /= factor;
      if (lo < kTmin || !next(lo, flo)) return hi;
    }
  }
  if (flo == 0.0) return lo;
  if (fhi == 0.0) return hi;
  auto tol = [rtol](double a, double b) { return std::fabs(b - a) <= rtol * std::min(std::fabs(a), std::fabs(b)); };
  // (any t gives a valid bound: the middle of the final bracket)
  if (!stop_where_cgf_fails) return solve_bracket(phi, Bracket{lo, hi, flo, fhi}, tol, 60, End::Middle);
  try {  // the quadrature can fail inside a bracket whose ends it evaluated (sigma = 1e4, t ~ 9e8)
    return solve_bracket(phi, Bracket{lo, hi, flo, fhi}, tol, 60, End::Middle);
  } catch (const std::runtime_error&) {
    return lo;
  }
}

}  // namespace detail

// The Chernoff bounds at one t (valid at every t > 0), from the CGF there.
inline Bound chernoff_epsilon_at(Ordering o, double delta, double t, const TiltedCumulants& g) {
  Bound b;
  b.ordering = o;
  b.t = t;
  b.margin = detail::cgf_margin(g);
  const double v = (g.log_mgf + b.margin + detail::chernoff_c(t) - std::log(delta)) / t;
  b.value = std::isnan(v) ? std::numeric_limits<double>::infinity() : std::max(0.0, v);  // NaN: no bound here
  return b;
}

inline Bound chernoff_delta_at(Ordering o, double eps, double t, const TiltedCumulants& g) {
  Bound b;
  b.ordering = o;
  b.t = t;
  b.margin = detail::cgf_margin(g);
  const double v = std::exp(g.log_mgf + b.margin - t * eps + detail::chernoff_c(t));
  b.value = std::isnan(v) ? 1.0 : std::min(1.0, v);
  return b;
}

inline Bound chernoff_epsilon_at(const Composition& c, Ordering o, double delta, double t) {
  t = detail::exact_order(t);
  return chernoff_epsilon_at(o, delta, t, loss_cgf(c, o, Loss::Y, t, 0, kBoundRtol));
}

inline Bound chernoff_delta_at(const Composition& c, Ordering o, double eps, double t) {
  t = detail::exact_order(t);
  return chernoff_delta_at(o, eps, t, loss_cgf(c, o, Loss::Y, t, 0, kBoundRtol));
}

// Certified eps(delta) for one ordering: the Chernoff bound at the t that
// minimises it.  The bound holds at every t and is flat at its optimum (the
// root below is where its derivative vanishes), so the root is found to
// 1e-6 only (moving the bound by ~1e-12 relative), and the answer is the
// smallest bound among the t the search evaluated.  t_hint: where to start
// (e.g. the other ordering's t), or 0.
inline Bound certified_epsilon(const Composition& c, Ordering o, double delta, double t_hint = 0.0) {
  detail::require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + detail::fmt(delta));
  const double log_delta = std::log(delta);
  Bound best;
  best.value = std::numeric_limits<double>::infinity();
  auto h = [&](double t) {
    t = detail::exact_order(t);
    const TiltedCumulants g = loss_cgf(c, o, Loss::Y, t, 1, kBoundRtol);
    const Bound b = chernoff_epsilon_at(o, delta, t, g);
    if (!(b.value >= best.value)) best = b;
    return t * g.derivative[1] - g.log_mgf + std::log1p(t) + log_delta;
  };
  detail::increasing_root_in_t(h, t_hint > 0.0 ? t_hint : 1.0, t_hint > 0.0 ? 2.0 : 4.0, 1e-6, true);
  return best;
}

// Certified delta(eps) for one ordering, in the same way.
inline Bound certified_delta(const Composition& c, Ordering o, double eps, double t_hint = 0.0) {
  detail::require(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got " + detail::fmt(eps));
  Bound best;
  best.value = std::numeric_limits<double>::infinity();
  auto d = [&](double t) {
    t = detail::exact_order(t);
    const TiltedCumulants g = loss_cgf(c, o, Loss::Y, t, 1, kBoundRtol);
    const Bound b = chernoff_delta_at(o, eps, t, g);
    if (!(b.value >= best.value)) best = b;
    return g.derivative[1] - eps - std::log1p(1.0 / t);
  };
  detail::increasing_root_in_t(d, t_hint > 0.0 ? t_hint : 1.0, t_hint > 0.0 ? 2.0 : 4.0, 1e-6, true);
  return best;
}

// Both orderings; the larger bound holds for add/remove neighbours.
inline Bound certified_epsilon(const Composition& c, double delta) {
  const Bound r = certified_epsilon(c, Ordering::Remove, delta);
  const Bound a = certified_epsilon(c, Ordering::Add, delta);
  return a.value > r.value ? a : r;
}

inline Bound certified_delta(const Composition& c, double eps) {
  const Bound r = certified_delta(c, Ordering::Remove, eps);
  const Bound a = certified_delta(c, Ordering::Add, eps);
  return a.value > r.value ? a : r;
}

}  // namespace edgeworth
