// Inversions: eps from delta, delta from eps, and the noise multiplier sigma
// from a target (eps, delta), for each method.  Every root is found by
// TOMS748 (Boost.Math, through roots.hpp) on a bracket whose end points have been evaluated and
// seen to change sign; nothing here runs an unbracketed solver.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "bounds.hpp"
#include "cf_bound.hpp"
#include "certified.hpp"
#include "edgeworth_bounds.hpp"
#include "cgf.hpp"
#include "expansions.hpp"
#include "mechanisms.hpp"
#include "rare_jump.hpp"
#include "roots.hpp"
#include "sampled_count.hpp"
#include "saddlepoint.hpp"

namespace edgeworth {

enum class Method : int { Certified = 0, Edgeworth = 1, Tilted = 2 };

// Which orderings an estimate covers: bit 0 = remove, bit 1 = add.
enum Orderings : int { kRemove = 1, kAdd = 2, kBoth = 3 };

struct MethodSpec {
  Method method = Method::Certified;
  int order = 2;               // Edgeworth order 1, 2 or 3
  int orderings = kBoth;       // Edgeworth only; certified and tilted always cover both
  // Certified only, internal: leave out the characteristic-function bound
  // (a looser but ~10-50x cheaper valid bound; calibrate_noise's first phase
  // where that bound declines).
  bool without_cf = false;
  // Certified only, for tests: the bound of this name (kCertifiedBounds)
  // throws when tried (CertifiedOptions::fail_bound).
  std::string fail_bound;

  void validate() const {
    detail::require(method == Method::Certified || method == Method::Edgeworth || method == Method::Tilted,
                    "unknown method");
    detail::require(order >= 1 && order <= 3, "order must be 1, 2 or 3, got " + std::to_string(order));
    detail::require(orderings >= 1 && orderings <= 3, "ordering must be 'remove', 'add' or 'both'");
  }
  CertifiedOptions certified_options() const { return CertifiedOptions{without_cf, fail_bound}; }
  bool covers(Ordering o) const {
    return method != Method::Edgeworth || (orderings & (o == Ordering::Remove ? kRemove : kAdd));
  }
};

constexpr double kEpsMax = 1e3;
// The certified calibration's tolerance on eps (see calibrate_noise).
constexpr double kCalibrateEpsRtol = 1e-5;
// The width of the bracket at which the certified calibration stops on a jump
// of the bound (see calibrate_noise).
constexpr double kCalibrateJumpRtol = 5e-6;

namespace detail {

inline void check_delta(double delta) {
  require(delta > 0.0 && delta < 1.0, "delta must be in (0, 1), got " + fmt(delta));
}
inline void check_eps(double eps, bool allow_zero) {
  require(std::isfinite(eps) && (allow_zero ? eps >= 0.0 : eps > 0.0) && eps <= kEpsMax,
          std::string("eps must be finite and in ") + (allow_zero ? "[0, " : "(0, ") + fmt(kEpsMax) +
              "], got " + fmt(eps));
}
inline void check_steps(double steps) {
  require(std::isfinite(steps) && steps >= 1.0 && std::floor(steps) == steps && steps <= kStepsMax,
          "steps must be an integer in [1, 2^53 = " + fmt(kStepsMax) + "], got " + fmt(steps));
}

// Edgeworth estimate of eps(delta) for one ordering: the first eps >= 0 at
// which the estimated delta falls to the target, bracketed by doubling.
inline double edgeworth_epsilon_one(const LossCumulants& lc, double delta, int order) {
  auto g = [&](double e) {
    const double d = edgeworth_delta(lc, e, order);
    return d > 0.0 ? std::log(d / delta) : -745.0;
  };
  const double g0 = g(0.0);
  if (g0 <= 0.0) return 0.0;
  const auto b = expand_bracket(
      g, Bracket{0.0, 0.125, g0, g(0.125)},
      [](double hi, double) { return 2.0 * hi > kEpsMax ? std::nullopt : std::optional<double>(2.0 * hi); },
      [](double v) { return v > 0.0; });
  if (!b)
    throw std::domain_error("the Edgeworth estimate of delta stays above " + fmt(delta) + " for every eps <= " +
                            fmt(kEpsMax) + ": the estimated eps exceeds " + fmt(kEpsMax) +
                            " or the expansion is unusable here; use method='certified'");
  return solve_bracketed(g, b->lo, b->hi, b->flo, b->fhi, 1e-13).second;
}

}  // namespace detail

namespace detail {
// The Edgeworth expansion standardises by kappa_2; where the privacy loss is
// degenerate in double precision (kappa_2 underflows, e.g. sigma = 0.01 at
// q = 1e-7, where Var X ~ e^-1250) there is nothing to expand.
inline std::array<LossCumulants, 2> expandable_cumulants(const Composition& c) {
  const auto lc = loss_cumulants(c);
  for (const auto& o : lc)
    if (!(o.x[2] > 0.0) || !(o.y[2] > 0.0) || !std::isfinite(o.x[2]) || !std::isfinite(o.y[2]))
      throw std::domain_error(
          "the Edgeworth expansion is undefined here: the variance of the privacy loss is not a positive finite "
          "double (it under- or overflows); use method='certified'");
  return lc;
}
}  // namespace detail

namespace detail {

// The largest of value_of(o) over the orderings the method covers, and which one it was.
template <class F>
Answer largest_over_orderings(const MethodSpec& m, const F& value_of) {
  Answer a;
  a.value = -std::numeric_limits<double>::infinity();
  for (Ordering o : {Ordering::Remove, Ordering::Add}) {
    if (!m.covers(o)) continue;
    const double v = value_of(o);
    if (v > a.value) {
      a.value = v;
      a.ordering = o;
    }
  }
  return a;
}

// The tilted estimate is a number in range or a named refusal: an answer that
// is not (delta = inf at sigma = 0.05, q = 1e-7, 1000 steps, where the
// saddle point runs off to the flat part of the loss), or a CGF that cannot be
// evaluated at the saddle point (its quadrature fails at s ~ 1e7 for
// sigma = 1000, q = 0.01, one step), becomes the same domain_error as the
// estimate's own refusals.
template <class F>
double checked_tilted(const F& estimate, double low, double high, const char* what, double at) {
  double v;
  try {
    v = estimate();
  } catch (const std::runtime_error& e) {
    throw std::domain_error(std::string("the tilted (saddle-point) estimate is unreliable here: ") + e.what() +
                            "; use method='certified'");
  } catch (const std::invalid_argument& e) {
    // The caller's arguments were checked before; an invalid_argument from
    // inside is the estimate feeding itself a nan (eps = -nan at sigma = 0.1,
    // q = 1, 1000 steps), which must not read as a complaint about the input.
    throw std::domain_error(std::string("the tilted (saddle-point) estimate is unreliable here (internally: ") +
                            e.what() + "); use method='certified'");
  }
  if (!(v >= low && v <= high))
    throw std::domain_error(std::string("the tilted (saddle-point) estimate is unreliable here: it gives ") + what +
                            " = " + fmt(v) + " at " + (what[0] == 'd' ? "eps" : "delta") + " = " + fmt(at) +
                            ", outside [" + fmt(low) + ", " + fmt(high) + "]; use method='certified'");
  return v;
}

}  // namespace detail

namespace detail {

inline void require_quadrature_range_for_estimate(const Composition& c) {
  if (beyond_quadrature(c))
    throw std::domain_error("a mixture mean exceeds " + fmt(kMixtureMeanMax) +
                            " noise standard deviations, beyond what the estimates' quadratures resolve; use "
                            "method='certified' (which answers with the sampled-count bound, or eps = inf)");
}

}  // namespace detail

namespace detail {

// The estimate (method="tilted") of one ordering and the method that gave it.
struct OrderingEstimate {
  double value;
  EstimateMethod how;
};

// Whether the characteristic-function inversion covers every mechanism of c
// (a Gaussian reference with an increasing loss: the subsampled Gaussian and
// the mixtures with non-negative means, ELS among them; not the Laplace
// mechanism).
inline bool cf_covers(const Composition& c) {
  for (const auto& seg : c.segments()) {
    const GaussianReferencePllr* g = seg.mechanism->gaussian_reference();
    if (g == nullptr || !g->pllr_increasing()) return false;
  }
  return true;
}

// The regime where no estimate answers, in words, for the decline's message.
inline std::string estimate_regime(const Composition& c) {
  if (!cf_covers(c))
    return "a mechanism whose privacy loss the characteristic-function inversion does not cover (not a Gaussian "
           "reference with an increasing loss, e.g. the Laplace mechanism)";
  if (few_sampled_steps(c))
    return "few sampled steps in all (" + fmt(expected_sampled_steps(c)) + " expected), where the privacy-loss sum "
           "is far from any smooth law";
  return "a privacy-loss law the inversion cannot resolve within its work budget";
}

// The fallback of the estimate: the characteristic-function inversion's
// central value (CfInversion::Value::central, without its error allowance),
// or nullopt where the inversion declines.
//
// Where the certified inversions decline at the tilt near the saddle point
// (the line's period, hence its terms, too large: ELS with k = 8 at sigma 1,
// q 0.01, 1000 steps, delta 1e-6 needs a period of 25223 at the Chernoff
// order 0.988, and 61 at half of it), the plain inversion is tried on the
// lines kCentralTilts times that tilt; its central value is accepted only
// where the inversion's own bracket [lower, upper] there is narrower than
// kCentralRtol relative in eps.
constexpr double kCentralTilts[] = {0.5, 2.0, 0.25, 4.0};
constexpr double kCentralRtol = 1e-3;

inline std::optional<double> cf_central_epsilon(const Composition& c, Ordering o, double delta) {
  const Bound chernoff = certified_epsilon(c, o, delta);  // above the answer: the search's ceiling
  if (!(chernoff.value > 0.0)) return 0.0;                 // (the bound itself says 0)
  double hi = std::isfinite(chernoff.value) ? std::min(chernoff.value, kEpsMax) : kEpsMax;
  try {
    // With few sampled steps the truncated retry's central value carries its
    // truncation bound, and can land above the rare-jump bound (sigma 0.5,
    // q 1e-7, 1000 steps, delta 1e-15: 0.905 against 0.277): the rare-jump
    // bound is the ceiling too, and no root below it is no estimate.
    // (a central value a hair above the bound, both at the truth, is clamped to it)
    double jump = std::numeric_limits<double>::infinity();
    if (o == Ordering::Remove && few_sampled_steps(c))
      if (const auto j = rare_jump_epsilon(c, delta, hi)) jump = *j;
    if (!(jump > 0.0)) return 0.0;
    hi = std::min(hi, (1.0 + kCentralRtol) * jump);
    if (const auto v = cf_epsilon(c, o, delta, hi, chernoff.t, /*eps_floor=*/0.0, /*central=*/true)) return std::min(*v, jump);
    const double c0 = cf_tilt_for_delta(c, o, delta, chernoff.t);
    for (double f : kCentralTilts) {
      const auto inv = CfInversion::build(c, o, f * c0, delta);
      if (!inv) continue;
      const double guess = std::min(loss_cgf(c, o, Loss::Y, inv->c(), 1, kBoundRtol).derivative[1], hi);
      const auto e = cf_epsilon_root([&](double x) { return inv->delta(x).central; }, delta, hi, guess);
      if (!e) continue;
      const CfInversion::Value v = inv->delta(*e);  // its own error: the bracket's width in eps
      if (v.lower > 0.0 && std::log(v.upper / v.lower) <= inv->c() * kCentralRtol * std::max(*e, 1e-3))
        return std::min(*e, jump);
    }
  } catch (const DeclineSignal&) {  // its numerics cannot answer here; any other error propagates
  }
  return std::nullopt;
}
inline std::optional<double> cf_central_delta(const Composition& c, Ordering o, double eps) {
  const Bound chernoff = certified_delta(c, o, eps);
  if (!(chernoff.value > 0.0)) return 0.0;
  try {
    const double hint = chernoff.value < 1.0 ? chernoff.t : 0.0;
    // (as for eps: the rare-jump bound is a ceiling, and a central value above it is no estimate)
    std::optional<double> jump;
    if (o == Ordering::Remove && few_sampled_steps(c)) jump = rare_jump_delta(c, eps);
    if (const auto v = cf_delta(c, o, eps, hint)) {
      if (jump && v->central > (1.0 + kCentralRtol) * *jump) return std::nullopt;
      return jump ? std::min(v->central, *jump) : v->central;
    }
    const double c0 = cf_tilt(c, o, eps, hint);  // (the lines around the saddle point's, as for eps)
    for (double f : kCentralTilts) {
      const double ct = f * c0;
      const auto inv =
          CfInversion::build(c, o, ct, std::exp(loss_cgf(c, o, Loss::Y, ct, 0, kBoundRtol).log_mgf - ct * eps) * 1e-2);
      if (!inv) continue;
      const CfInversion::Value v = inv->delta(eps);
      if (v.lower > 0.0 && std::log(v.upper / v.lower) <= ct * kCentralRtol * std::max(eps, 1e-3)) return v.central;
    }
  } catch (const DeclineSignal&) {  // its numerics cannot answer here; any other error propagates
  }
  return std::nullopt;
}

// One ordering's estimate: the saddle point (with its conditioned fallback,
// saddlepoint.hpp); where that declines, the characteristic-function
// inversion's central value; where that declines too, a decline naming the
// regime.
//
// With few sampled steps in all (detail::few_sampled_steps) the
// characteristic-function inversion alone: there the single saddle point
// misses the rare jump, and the conditioned inversion's eps search can end on
// a root of its own error (sigma 9.6363, q 1.3987e-4, 2 steps,
// delta 3.16e-9: both gave the remove ordering eps 0, whose truth is 7.63e-5).
template <class Saddle, class Central>
OrderingEstimate estimate_one(const Composition& c, const Saddle& saddle, const Central& central, double low,
                              double high, const char* what, double at) {
  std::string why;
  if (few_sampled_steps(c) && cf_covers(c)) {
    const auto v = central();
    if (v && *v >= low && *v <= high) return {*v, EstimateMethod::CharacteristicFunction};
    throw std::domain_error("no estimate answers here: few sampled steps in all (" +
                            fmt(expected_sampled_steps(c)) + " expected), where no saddle point describes the "
                            "privacy loss, and the characteristic-function inversion declines (" +
                            estimate_regime(c) + "); use method='certified'");
  }
  try {
    bool conditioned = false;
    const double v = checked_tilted([&] { return saddle(&conditioned); }, low, high, what, at);
    return {v, conditioned ? EstimateMethod::ConditionedInversion : EstimateMethod::SaddlePoint};
  } catch (const std::domain_error& e) {
    why = e.what();
  }
  const auto v = central();
  if (v && *v >= low && *v <= high) return {*v, EstimateMethod::CharacteristicFunction};
  throw std::domain_error("no estimate answers here: " + why.substr(0, why.find("; use method='certified'")) +
                          "; the characteristic-function inversion declines too (" + estimate_regime(c) +
                          "); use method='certified'");
}

// The largest estimate over both orderings, labelled with the method that
// gave it.  An ordering whose estimate declines is left out where its
// certified upper bound (`ceiling`, the Chernoff bound) is at or below the
// other ordering's estimate, so that it cannot be the larger (the add
// ordering with few sampled steps, where the certified answer skips it too:
// add_cannot_dominate); otherwise its decline stands.
template <class F, class Ceiling>
Answer largest_estimate(const F& one, const Ceiling& ceiling) {
  std::optional<OrderingEstimate> est[2];
  std::optional<std::domain_error> declined[2];
  for (Ordering o : {Ordering::Remove, Ordering::Add}) {
    try {
      est[static_cast<int>(o)] = one(o);
    } catch (const std::domain_error& e) {
      declined[static_cast<int>(o)] = e;
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (!declined[i]) continue;
    const auto& other = est[1 - i];
    if (!other || !(ceiling(static_cast<Ordering>(i)) <= other->value)) throw *declined[i];
  }
  const int k = !est[0] ? 1 : !est[1] ? 0 : (est[1]->value > est[0]->value ? 1 : 0);
  Answer a;
  a.value = est[k]->value;
  a.ordering = static_cast<Ordering>(k);
  a.estimate_method = est[k]->how;
  return a;
}

// The estimate (method="tilted") of eps at delta or of delta at eps, in the
// order tried: the exact curve (one step of the subsampled Gaussian), the
// saddle point, its conditioned inversion (remove ordering), the
// characteristic-function inversion's central value.  what: "eps" or
// "delta", at the given delta or eps, in [0, high]; for one ordering o,
// exact(law, o) is the exact curve, saddle(o, conditioned) the saddle point
// (with its conditioned fallback), central(o) the central value and
// ceiling(o) the certified Chernoff bound (largest_estimate).
template <class Exact, class Saddle, class Central, class Ceiling>
Answer estimate_answer(const Composition& c, const char* what, double at, double high, const Exact& exact,
                       const Saddle& saddle, const Central& central, const Ceiling& ceiling) {
  if (count_bound_is_exact(c)) {
    // One step of the subsampled Gaussian: the exact curve, where the single
    // saddle point is 0.7 % low (sigma 1, q 0.1, delta 1e-8) or declines
    // after 100 ms (sigma 10, q 1e-3, delta 1e-15).
    const auto law = sampled_count_law(c);
    Answer a = largest_over_orderings(MethodSpec{}, [&](Ordering o) { return exact(*law, o); });
    a.estimate_method = EstimateMethod::ExactOneStep;
    return a;
  }
  return largest_estimate(
      [&](Ordering o) {
        return estimate_one(
            c, [&](bool* conditioned) { return saddle(o, conditioned); }, [&] { return central(o); }, 0.0, high,
            what, at);
      },
      ceiling);
}

inline Answer estimate_epsilon(const Composition& c, double delta) {
  constexpr double kHigh = std::numeric_limits<double>::max();
  return estimate_answer(
      c, "eps", delta, kHigh,
      [&](const SampledCountLaw& law, Ordering o) {
        return checked_tilted(
            [&] {
              const auto v = sampled_count_epsilon(law, o, delta);  // (none: not even eps = 1000 meets delta)
              return v ? *v : std::numeric_limits<double>::infinity();
            },
            0.0, kHigh, "eps", delta);
      },
      [&](Ordering o, bool* conditioned) { return tilted_epsilon(c, o, delta, conditioned); },
      [&](Ordering o) { return cf_central_epsilon(c, o, delta); },
      [&](Ordering o) { return certified_epsilon(c, o, delta).value; });
}

inline Answer estimate_delta(const Composition& c, double eps) {
  return estimate_answer(
      c, "delta", eps, 1.0, [&](const SampledCountLaw& law, Ordering o) { return sampled_count_delta(law, o, eps); },
      [&](Ordering o, bool* conditioned) { return tilted_delta(c, o, eps, conditioned); },
      [&](Ordering o) { return cf_central_delta(c, o, eps); },
      [&](Ordering o) { return certified_delta(c, o, eps).value; });
}

}  // namespace detail

inline Answer epsilon(const Composition& c, double delta, const MethodSpec& m) {
  m.validate();
  detail::check_delta(delta);
  if (m.method != Method::Certified) detail::require_quadrature_range_for_estimate(c);
  switch (m.method) {
    case Method::Certified:
      return certified_epsilon_answer(c, delta, m.certified_options());
    case Method::Tilted:
      return detail::estimate_epsilon(c, delta);
    case Method::Edgeworth:
      break;
  }
  const auto lc = detail::expandable_cumulants(c);
  return detail::largest_over_orderings(m, [&](Ordering o) {
    return detail::edgeworth_epsilon_one(lc[static_cast<int>(o)], delta, m.order);
  });
}

inline Answer delta(const Composition& c, double eps, const MethodSpec& m) {
  m.validate();
  detail::check_eps(eps, true);
  if (m.method != Method::Certified) detail::require_quadrature_range_for_estimate(c);
  switch (m.method) {
    case Method::Certified:
      return certified_delta_answer(c, eps, m.certified_options());
    case Method::Tilted:
      return detail::estimate_delta(c, eps);
    case Method::Edgeworth:
      break;
  }
  const auto lc = detail::expandable_cumulants(c);
  return detail::largest_over_orderings(m, [&](Ordering o) {
    return edgeworth_delta(lc[static_cast<int>(o)], eps, m.order);
  });
}

// DP-SGD: `steps` steps of the Poisson-subsampled Gaussian.
inline Composition dpsgd(double sigma, double q, double steps) {
  detail::check_steps(steps);
  Composition c;
  c.add(std::make_shared<SubsampledGaussian>(sigma, q), steps);
  return c;
}

namespace detail {

// The sigma at which Gaussian DP with the CLT's mu = q sqrt(T (e^(1/sigma^2) - 1))
// (Bu et al., arXiv 1911.11607) gives eps at delta: only a starting point.
inline double gdp_sigma_guess(double eps, double delta, double steps, double q) {
  auto gdp_delta = [&](double mu) {
    return 0.5 * std::erfc((eps / mu - mu / 2.0) / std::sqrt(2.0)) -
           std::exp(eps) * 0.5 * std::erfc((eps / mu + mu / 2.0) / std::sqrt(2.0));
  };
  double lo = 1e-6, hi = 1e3;  // delta increases in mu
  if (!(gdp_delta(hi) > delta)) return std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = std::sqrt(lo * hi);
    (gdp_delta(mid) > delta ? hi : lo) = mid;
  }
  const double r = lo / (q * std::sqrt(steps));
  return 1.0 / std::sqrt(std::log1p(r * r));
}

}  // namespace detail

namespace detail {

// One calibration's search state: the memoised residual r(sigma) =
// eps(sigma) - target under the method, the least sigma seen to meet the
// target with its answer, and the phases of the search (calibrate_noise).
template <class Make>
class NoiseSearch {
 public:
  NoiseSearch(double eps, double delta, const Make& make, const MethodSpec& m, double rtol)
      : eps_(eps), delta_(delta), make_(make), m_(m), rtol_(rtol),
        eps_rtol_(m.method == Method::Certified ? std::max(rtol, kCalibrateEpsRtol) : rtol) {}

  // r(sigma), memoised, so that a point the search returns to costs nothing.
  double r(double sigma) {
    if (const auto it = seen_.find(sigma); it != seen_.end()) return it->second;
    double v;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      const Answer a = edgeworth::epsilon(make_(sigma), delta_, m_);
      v = a.value - eps_;
      last_source_ = a.source;
      record(sigma, a, false, t0);
      if (v <= 0.0 && sigma < best_safe_) {
        best_safe_ = sigma;
        best_ = a;
      }
    } catch (const std::domain_error& e) {
      if (m_.method == Method::Tilted) throw;
      v = 2.0 * kEpsMax;
      record_decline(sigma, e.what(), false, t0);
    }
    seen_.emplace(sigma, v);
    return v;
  }

  // r on the cheap bounds alone (certified without the CF bound): at or above r.
  double r_cheap(double sigma) const {
    MethodSpec cheap = m_;
    cheap.without_cf = true;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      const Answer a = edgeworth::epsilon(make_(sigma), delta_, cheap);
      record(sigma, a, true, t0);
      return a.value - eps_;
    } catch (const std::domain_error& e) {
      record_decline(sigma, e.what(), true, t0);
      return 2.0 * kEpsMax;
    }
  }

  bool close_enough() const { return std::isfinite(best_safe_) && best_.value >= eps_ * (1.0 - eps_rtol_); }
  bool found() const { return std::isfinite(best_safe_); }
  Source last_source() const { return last_source_; }

  // A jump: the certified eps is the smallest of several bounds, and where
  // one of them starts to answer as sigma grows (the characteristic-function
  // bound's retries with few sampled steps: eps 0.68 -> 0.0054 between sigmas
  // 5e-10 apart at q = 1e-7, 1000 steps, delta = 1e-15) the crossing of the
  // target sits on the jump.  Once the bracket is kCalibrateJumpRtol wide
  // with both ends more than 1 % from the target there is nothing to converge
  // to; the safe end is within that of the least sigma.  (At 1e-4, two
  // targets whose crossings sit on the same jump came back up to 1e-4 apart in
  // either order: eps 0.013872 and 1 % more at q 9.16e-6, 2898 steps, delta
  // 1.42e-3 gave sigmas 0.403196 and 0.403382.)
  bool at_jump(double lo, double hi, double r_lo, double r_hi) const {
    return hi / lo - 1.0 <= kCalibrateJumpRtol && std::fabs(r_lo) > 0.01 * eps_ && std::fabs(r_hi) > 0.01 * eps_;
  }

  // TOMS748 on a bracket of r, until it is rtol wide, close enough, or at a jump.
  void narrow(double lo, double hi, double flo, double fhi) {
    if (flo == 0.0 || fhi == 0.0) return;
    auto tol = [&](double a, double b) {
      if (std::fabs(b - a) <= rtol_ * std::min(std::fabs(a), std::fabs(b)) || close_enough()) return true;
      const auto ra = seen_.find(std::min(a, b)), rb = seen_.find(std::max(a, b));
      return ra != seen_.end() && rb != seen_.end() && at_jump(ra->first, rb->first, ra->second, rb->second);
    };
    // (the answer is the least safe sigma, recorded by r: the bracket itself is not needed)
    narrow_bracket([this](double s) { return r(s); }, Bracket{lo, hi, flo, fhi}, tol, 200);
  }

  // The answer: the least sigma seen to meet the target.
  Answer answer() const {
    Answer a = best_;
    a.value = best_safe_;
    a.calibration = steps_;
    return a;
  }

  // The certified phases: secant steps on log eps against log sigma (eps
  // falls like a power of sigma, so from a good start they converge in a few
  // steps), first on the cheap bounds where the tight bound does not answer
  // at the start, then on the full bound, then TOMS748 on the bracket they
  // found.  Every point is an evaluation of r, so whatever the steps do, the
  // answer is the smallest sigma seen to meet the target; the steps only make
  // that sigma close to the crossing.  They stop once the bracket [unsafe,
  // safe] is rtol wide relative, or a safe sigma's eps is within eps_rtol of
  // the target (then sigma is within ~eps_rtol of the crossing).  nullopt:
  // the bracket search takes over from `start` (updated to the last point).
  std::optional<Answer> certified_phases(double& start, bool cheap_first) {
    Window br;
    double slope = -1.5;
    double v_start = 0.0;
    if (!cheap_first) {
      v_start = r(start);
      br.record(start, v_start);
    }
    double x_from = std::log(start), v_from = v_start;
    if (cheap_first || (last_source_ != Source::CharacteristicFunction && !close_enough()))
      cheap_phase(start, cheap_first, br, slope, x_from, v_from);
    else if (!close_enough() && std::fabs(log_ratio(v_from)) > 0.02)
      cheap_slope(start, slope);
    if (!close_enough() && !(br.width() <= rtol_)) {
      // (from the cheap bounds' crossing, their slope there is the better first guess)
      const double x_last = secant([this](double s) { return r(s); }, x_from, v_from, br,
                                   [&](const Window&) { return close_enough(); }, slope);
      start = std::exp(x_last);
    }
    if (found() && (br.width() <= rtol_ || close_enough() || at_jump(br))) return answer();
    if (br.both()) {
      narrow(br.unsafe, br.safe, br.r_unsafe, br.r_safe);
      return answer();
    }
    return std::nullopt;
  }

  // The bracket search: from `start`, steps by the factor `down` (< 1) until
  // r changes sign, then TOMS748.
  Answer bracket_search(double start, double down, const std::string& name, const std::string& setting) {
    double lo = start, hi = start, flo = r(start), fhi = flo;
    if (flo > 0.0) {
      while (fhi > 0.0) {
        if (hi == kSigmaMax)
          throw std::domain_error("no " + name + " <= " + fmt(kSigmaMax) + " meets eps = " + fmt(eps_) +
                                  ", delta = " + fmt(delta_) + (setting.empty() ? "" : " with " + setting));
        lo = hi;
        flo = fhi;
        hi = std::min(hi / down, kSigmaMax);
        fhi = r(hi);
      }
    } else {
      while (flo <= 0.0) {
        if (lo == kSigmaMin)
          throw std::domain_error("eps = " + fmt(eps_) + ", delta = " + fmt(delta_) + " is met even at " + name +
                                  " = " + fmt(lo) + (setting.empty() ? "" : " (" + setting + ")") + "; " + name +
                                  " is only searched in [" + fmt(kSigmaMin) + ", " + fmt(kSigmaMax) + "]");
        hi = lo;
        fhi = flo;
        lo = std::max(down * lo, kSigmaMin);
        flo = r(lo);
      }
    }
    narrow(lo, hi, flo, fhi);
    return answer();
  }

 private:
  // the bracket in sigma, with r at its ends (a NaN counts as unsafe)
  struct Window {
    double unsafe = 0.0, safe = std::numeric_limits<double>::infinity(), r_unsafe = 0.0, r_safe = 0.0;
    void record(double sigma, double v) {
      if (v <= 0.0 && sigma < safe) {
        safe = sigma;
        r_safe = v;
      } else if (!(v <= 0.0) && sigma > unsafe) {
        unsafe = sigma;
        r_unsafe = std::isnan(v) ? 2.0 * kEpsMax : v;
      }
    }
    double width() const { return safe / unsafe - 1.0; }
    bool both() const { return unsafe > 0.0 && std::isfinite(safe); }
  };
  bool at_jump(const Window& b) const { return b.both() && at_jump(b.unsafe, b.safe, b.r_unsafe, b.r_safe); }

  // the calibration's record of its evaluations (Answer::calibration)
  static double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void record(double sigma, const Answer& a, bool cheap, std::chrono::steady_clock::time_point t0) const {
    const bool estimate = a.estimate_method != EstimateMethod::None;
    steps_.push_back({sigma, a.value, a.value <= eps_, cheap,
                      estimate ? estimate_method_name(a.estimate_method) : source_name(a.source), "", since(t0)});
  }
  void record_decline(double sigma, const char* why, bool cheap, std::chrono::steady_clock::time_point t0) const {
    steps_.push_back({sigma, std::numeric_limits<double>::quiet_NaN(), false, cheap, "declined", why, since(t0)});
  }

  // log(eps(sigma) / eps) from r's value
  double log_ratio(double v) const {
    return v + eps_ > 0.0 ? std::log((v + eps_) / eps_) : -std::numeric_limits<double>::infinity();
  }

  // Secant steps of f from x0 (f(e^x0) = v0 known), recording into br, until
  // done(); returns the last x.  slope0: d log eps / d log sigma to take the
  // first step with (eps ~ sigma^-1.5 unless known better); on return, the
  // last secant slope seen.  The steps stay strictly inside the searched range.
  template <class F, class Done>
  double secant(const F& f, double x0, double v0, Window& br, const Done& done, double& slope0) const {
    const double x_min = std::log(kSigmaMin) + 1e-12, x_max = std::log(kSigmaMax) - 1e-12;
    double y0 = log_ratio(v0);
    double x1 = std::clamp(x0 + std::clamp(-y0 / slope0, -0.7, 0.7), x_min, x_max);
    for (int it = 0; it < 12; ++it) {
      const double sigma = std::exp(x1);
      const double v1 = f(sigma), y1 = log_ratio(v1);
      br.record(sigma, v1);
      // a step that stayed on its side of the target and closed less than half the gap
      const bool creeping = it > 0 && (y1 > 0.0) == (y0 > 0.0) && std::fabs(y1) > 0.5 * std::fabs(y0);
      if (br.width() <= rtol_ || done(br) || at_jump(br)) break;
      double slope = (y1 - y0) / (x1 - x0);
      if (!(slope < 0.0) || !std::isfinite(slope)) slope = -1.5;
      slope0 = slope;
      // aim a hair to the safe side once close, so the last step lands safe
      const double aim = std::fabs(y1) < 1e-3 ? -0.3 * eps_rtol_ : 0.0;
      double x2 = std::clamp(x1 + std::clamp((aim - y1) / slope, -0.7, 0.7), x_min, x_max);
      // outside the bracket, or creeping up on one end of it (across a jump
      // between bounds the secant keeps landing on the same side, closing
      // little of the gap each time): bisect it
      if (br.both() && (!(x2 > std::log(br.unsafe) && x2 < std::log(br.safe)) || creeping))
        x2 = 0.5 * (std::log(br.unsafe) + std::log(br.safe));
      if (x2 == x1) break;  // pinned at an end of the range: the search below reports it
      x0 = x1;
      y0 = y1;
      x1 = x2;
    }
    return x1;
  }

  // The tight bound did not answer at the start (few sampled steps, where it
  // can take 20-90 ms to decline).  Converge first on the cheaper bounds
  // alone, which lie above the certified eps, so their crossing is at or
  // above the answer; then evaluate in full there: where the tight bound
  // still does not help, that point is the answer (one full evaluation
  // instead of five), and otherwise the search goes on from it.
  void cheap_phase(double start, bool cheap_first, Window& br, double& slope, double& x_from, double& v_from) {
    Window cheap_br;
    const double vc = r_cheap(start);
    cheap_br.record(start, vc);
    secant([this](double s) { return r_cheap(s); }, std::log(start), vc, cheap_br,
           [&](const Window& b) { return std::isfinite(b.safe) && b.r_safe >= -eps_ * eps_rtol_; }, slope);
    if (std::isfinite(cheap_br.safe)) {
      x_from = std::log(cheap_br.safe);
      v_from = r(cheap_br.safe);
      br.record(cheap_br.safe, v_from);
    } else if (cheap_first) {
      v_from = r(start);  // (nothing safe on the cheap bounds: the full search from the start)
      br.record(start, v_from);
    }
  }

  // Far from the target (a poor CLT start, few sampled steps), with no cheap
  // phase to learn a slope from: the first secant step takes the cheap
  // bounds' local slope at the start, which follows the full bound's better
  // than a fixed guess (eps 10, delta 1e-5, q 1e-3, 1000 steps: -3.2 against
  // -3.35; the fixed -1.5 overshoots by 8 %).
  void cheap_slope(double start, double& slope) const {
    const double h = start * 1.01 <= kSigmaMax ? 0.01 : -0.01;  // (a step inside the range)
    const double e0 = r_cheap(start) + eps_, e1 = r_cheap(start * (1.0 + h)) + eps_;
    const double s = std::log(e1 / e0) / std::log1p(h);
    if (e0 > 0.0 && e1 > 0.0 && e0 < kEpsMax && e1 < kEpsMax && std::isfinite(s) && s < 0.0)
      slope = std::clamp(s, -8.0, -0.5);
  }

  const double eps_, delta_;
  const Make& make_;
  const MethodSpec& m_;
  const double rtol_, eps_rtol_;
  std::map<double, double> seen_;
  double best_safe_ = std::numeric_limits<double>::infinity();
  Answer best_;
  Source last_source_ = Source::Estimate;
  mutable std::vector<CalibrationStep> steps_;
};

}  // namespace detail

// The smallest noise parameter sigma in [kSigmaMin, kSigmaMax] at which the
// composition make(sigma) has eps at `delta` at most `eps` under the method
// (certified: the bound; tilted / edgeworth: the estimate), for any family
// whose eps decreases in sigma (e.g. the noise multiplier of DP-SGD, of ELS's
// Gaussian mixture, or the Laplace scale).  It solves eps(sigma) = eps with
// the very function `epsilon` above, so epsilon(make(answer)) <= eps holds
// exactly, not just up to rounding: the answer is the smallest sigma seen
// whose eps met the target, i.e. the safe end of the final bracket.  The
// search starts at `start` and steps by the factor `down` (< 1).
//
// It stops when the bracket is rtol wide (relative), or, for the certified
// method, as soon as a sigma meets the target with eps within
// kCalibrateEpsRtol of it.  The certified eps is the smallest of several
// bounds with discrete choices inside (the characteristic-function bound's
// tilt, terms and nodes), so it jitters by up to ~3e-5 relative between
// sigmas 1e-9 apart (e.g. eps = 0.1, delta = 1e-15, q = 1e-3, 1000 steps);
// chasing a 1e-9 bracket through that jitter took 22 evaluations where 5 give
// a sigma within ~1e-5 of the smallest.
//
// Phases (detail::NoiseSearch): for the certified method, certified_phases
// (the cheap bounds' crossing, then secant steps, then TOMS748 on their
// bracket); where they end without an answer, and for the estimates,
// bracket_search.
//
// cheap_first (certified): converge on the cheap bounds before the first full
// evaluation, for settings where they are nearly the full bound and the CLT
// start is a poor guess (the rare-jump regime, detail::jump_regime: at q = 1e-7,
// 1000 steps, delta = 1e-15 and eps = 0.1 the CLT start is sigma 0.244, the
// answer 0.535).
template <class Make>
Answer calibrate_noise(double eps, double delta, const Make& make, const MethodSpec& m, double start, double down,
                       double rtol, const std::string& name = "noise parameter", const std::string& setting = "",
                       bool cheap_first = false) {
  m.validate();
  detail::check_eps(eps, false);
  detail::check_delta(delta);
  detail::NoiseSearch<Make> search(eps, delta, make, m, rtol);
  start = std::min(std::max(start, kSigmaMin), kSigmaMax);
  if (m.method == Method::Certified)
    if (const auto a = search.certified_phases(start, cheap_first)) return *a;
  return search.bracket_search(start, down, name, setting);
}

// The smallest sigma in [kSigmaMin, kSigmaMax] whose eps at `delta` is at most
// `eps` under the method (certified: the bound; edgeworth: the estimate).
// It solves epsilon(sigma) = eps with the very function `epsilon` above, so
// epsilon(calibrate_sigma(eps, ...)) <= eps holds exactly, not just up to
// rounding: the answer is the smallest sigma seen whose eps met the target,
// i.e. the safe end of the final bracket (see calibrate_noise for when it stops).
inline Answer calibrate_sigma(double eps, double delta, double steps, double q, const MethodSpec& m) {
  m.validate();
  detail::check_eps(eps, false);
  detail::check_delta(delta);
  detail::check_steps(steps);
  detail::require(std::isfinite(q) && q >= kQMin && q <= 1.0,
                  "q (sampling rate) must be in [" + detail::fmt(kQMin) + ", 1], got " + detail::fmt(q));
  // An Edgeworth expansion that never reaches delta or is undefined (tiny
  // sigma) counts as too little noise.  The tilted estimate declines where it
  // is unreliable, which can happen on either side, so its errors propagate;
  // its search starts at the certified sigma, which is at or above the sigma
  // it is looking for.
  double start = 1.0, down = 0.5;
  if (m.method == Method::Certified) {
    // Start at the Gaussian-DP (CLT) sigma, which is within a few percent of
    // the answer wherever many steps are sampled (calibrate_noise then takes
    // secant steps from there).
    const double guess = detail::gdp_sigma_guess(eps, delta, steps, q);
    if (std::isfinite(guess) && guess > kSigmaMin && guess < kSigmaMax) {
      start = guess;
      down = 1.0 / 1.03;
    } else if (guess >= kSigmaMax) {
      // (where even the CLT wants more than the range, e.g. eps = 0.1,
      // delta = 1e-15, a billion full-batch steps: one evaluation at the top
      // says whether anything in range will do, instead of 20 doublings from 1)
      start = kSigmaMax;
    }
  }
  if (m.method == Method::Tilted) {
    MethodSpec cert = m;
    cert.method = Method::Certified;
    start = calibrate_sigma(eps, delta, steps, q, cert).value;
    down = 0.9;
  }
  return calibrate_noise(eps, delta, [&](double sigma) { return dpsgd(sigma, q, steps); }, m, start, down,
                         m.method == Method::Certified ? 1e-9 : 1e-10, "sigma",
                         "steps = " + detail::fmt(steps) + ", q = " + detail::fmt(q),
                         detail::jump_regime(dpsgd(1.0, q, steps)));
}
}  // namespace edgeworth
