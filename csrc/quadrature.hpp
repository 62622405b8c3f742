// Globally adaptive Gauss-Kronrod quadrature for small vector integrands.
//
// The nodes and weights are Boost.Math's 15/31-point Gauss-Kronrod pair.
// Boost's own adaptive driver integrates one scalar at a time and stops on a
// single tolerance; the CGF needs up to six moments of the same integrand,
// each to its own relative accuracy, so this driver evaluates the integrand
// once per node for all components and refines until every component meets
//     error_j <= rtol * L1_j,
// where L1_j = integral of |f_j| (a relative tolerance that does not vanish
// when the moments are tiny, e.g. ~q^2 for small sampling rates).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include <boost/math/quadrature/gauss.hpp>
#include <boost/math/quadrature/gauss_kronrod.hpp>

namespace edgeworth {

template <std::size_t N>
using Vec = std::array<double, N>;

template <std::size_t N>
struct QuadratureResult {
  Vec<N> value{};
  Vec<N> error{};   // |Kronrod - Gauss| summed over panels (conservative)
  Vec<N> l1{};      // integral of |f_j|
  bool converged = false;
  int panels = 0;
};

namespace detail {

template <std::size_t N>
struct Panel {
  double a, b;
  Vec<N> value, error, l1;
};

// One Gauss-Kronrod panel on [a, b]: the Points-point Kronrod rule (15 or
// 31) for the value, its embedded (Points / 2)-point Gauss rule for the error.
// 15 points suit smooth integrands that are costly per node.
template <int Points, std::size_t N, class F>
Panel<N> gk_panel(const F& f, double a, double b) {
  static_assert(Points == 15 || Points == 31, "15 or 31 points");
  using kronrod = boost::math::quadrature::gauss_kronrod<double, Points>;
  using gauss = boost::math::quadrature::gauss<double, Points / 2>;
  const auto& x = kronrod::abscissa();
  const auto& wk = kronrod::weights();
  const auto& wg = gauss::weights();
  const double mid = 0.5 * (a + b), half = 0.5 * (b - a);

  Panel<N> p{a, b, {}, {}, {}};
  Vec<N> gsum{};
  // abscissa()[0] = 0 is a Gauss node; the even indices are Gauss nodes too.
  {
    const Vec<N> v = f(mid);
    for (std::size_t j = 0; j < N; ++j) {
      p.value[j] = v[j] * wk[0];
      p.l1[j] = std::fabs(v[j]) * wk[0];
      gsum[j] = v[j] * wg[0];
    }
  }
  for (std::size_t i = 1; i < x.size(); ++i) {
    const Vec<N> vp = f(mid + half * x[i]);
    const Vec<N> vm = f(mid - half * x[i]);
    for (std::size_t j = 0; j < N; ++j) {
      const double s = vp[j] + vm[j];
      p.value[j] += s * wk[i];
      p.l1[j] += (std::fabs(vp[j]) + std::fabs(vm[j])) * wk[i];
      if (i % 2 == 0) gsum[j] += s * wg[i / 2];
    }
  }
  for (std::size_t j = 0; j < N; ++j) {
    p.value[j] *= half;
    p.l1[j] *= half;
    gsum[j] *= half;
    const double floor = 4.0 * std::numeric_limits<double>::epsilon() * p.l1[j];
    p.error[j] = std::max(std::fabs(p.value[j] - gsum[j]), floor);
  }
  return p;
}

}  // namespace detail

// Integrate f over [cuts.front(), cuts.back()], starting with one panel per
// gap between consecutive cuts and bisecting the panel with the largest error
// relative to its component's tolerance until every component's summed error
// is at most tol(result)[j] (a callable, so that tolerances may follow the
// running totals), or until max_panels panels are in use (then converged ==
// false and the error estimate says how far it got).
template <std::size_t N, int Points = 31, class F, class Tol>
QuadratureResult<N> integrate_to(const F& f, std::vector<double> cuts, const Tol& tol, int max_panels) {
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<detail::Panel<N>> panels;
  panels.reserve(static_cast<std::size_t>(max_panels) + 8);
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i)
    panels.push_back(detail::gk_panel<Points, N>(f, cuts[i], cuts[i + 1]));

  QuadratureResult<N> r;
  for (;;) {
    r.value.fill(0.0);
    r.error.fill(0.0);
    r.l1.fill(0.0);
    for (const auto& p : panels)
      for (std::size_t j = 0; j < N; ++j) {
        r.value[j] += p.value[j];
        r.error[j] += p.error[j];
        r.l1[j] += p.l1[j];
      }
    r.panels = static_cast<int>(panels.size());
    const Vec<N> t = tol(r);
    bool done = true;
    for (std::size_t j = 0; j < N; ++j)
      if (r.error[j] > t[j]) done = false;
    if (done) {
      r.converged = true;
      return r;
    }
    if (static_cast<int>(panels.size()) >= max_panels) return r;

    // Bisect the panel that contributes most to the worst component.
    std::size_t worst = 0;
    double worst_score = -1.0;
    for (std::size_t i = 0; i < panels.size(); ++i)
      for (std::size_t j = 0; j < N; ++j)
        if (t[j] > 0.0 && panels[i].error[j] / t[j] > worst_score) {
          worst_score = panels[i].error[j] / t[j];
          worst = i;
        }
    const double a = panels[worst].a, b = panels[worst].b, m = 0.5 * (a + b);
    if (!(m > a && m < b)) return r;  // panel cannot be split further in double
    panels[worst] = detail::gk_panel<Points, N>(f, a, m);
    panels.push_back(detail::gk_panel<Points, N>(f, m, b));
  }
}

// The same with a relative tolerance: every component's error within rtol of
// its L1 norm.
template <std::size_t N, class F>
QuadratureResult<N> integrate_adaptive(const F& f, std::vector<double> cuts, double rtol,
                                       int max_panels = 400) {
  auto tol = [rtol](const QuadratureResult<N>& r) {
    Vec<N> t;
    for (std::size_t j = 0; j < N; ++j) t[j] = rtol * r.l1[j];
    return t;
  };
  return integrate_to<N>(f, std::move(cuts), tol, max_panels);
}

}  // namespace edgeworth
