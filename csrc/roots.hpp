// One root finder for the whole core: bracket, then TOMS748 (Boost.Math), with
// the end of the final bracket chosen by the caller.
//
// Every search here is for the crossing of a monotone function between a point
// on one side and a point on the other: `Bracket` holds both with their values,
// `expand_bracket` steps one end outward until the sign changes, and
// `solve_bracket` narrows it by TOMS748 and returns the end the caller names:
// for a certified value the safe end (the one whose value is known to meet the
// target), for an estimate the middle.  Nothing here runs an unbracketed
// solver.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>

#include <boost/math/tools/toms748_solve.hpp>

namespace edgeworth {
namespace detail {

// [lo, hi] with f at both ends.
struct Bracket {
  double lo, hi, flo, fhi;
};

// Which end of the final bracket to return.
enum class End { Lower, Upper, Middle };

// Steps the upper end outward while `short_of(fhi)` (the root lies above hi):
// lo takes hi's place and hi = next(hi, f(hi)).  next returns nullopt where the
// search must stop (a limit reached); then nullopt is returned and the caller
// says what that means (no answer, or a named error).
template <class F, class Next, class ShortOf>
std::optional<Bracket> expand_bracket(const F& f, Bracket b, const Next& next, const ShortOf& short_of) {
  while (short_of(b.fhi)) {
    const std::optional<double> n = next(b.hi, b.fhi);
    if (!n) return std::nullopt;
    b.lo = b.hi;
    b.flo = b.fhi;
    b.hi = *n;
    b.fhi = f(b.hi);
  }
  return b;
}

// TOMS748 on b, whose ends' values differ in sign (or one is 0), until tol(a,
// b) holds or max_iter evaluations: the final bracket, for callers that look
// at both ends.
template <class F, class Tol>
std::pair<double, double> narrow_bracket(const F& f, const Bracket& b, const Tol& tol, std::uintmax_t max_iter) {
  return boost::math::tools::toms748_solve(f, b.lo, b.hi, b.flo, b.fhi, tol, max_iter);
}

// The end of the final bracket that `end` names.
template <class F, class Tol>
double solve_bracket(const F& f, const Bracket& b, const Tol& tol, std::uintmax_t max_iter, End end) {
  const auto br = narrow_bracket(f, b, tol, max_iter);
  switch (end) {
    case End::Lower: return br.first;
    case End::Upper: return br.second;
    case End::Middle: break;
  }
  return 0.5 * (br.first + br.second);
}

// The bracket [lo, hi] itself, to a relative width rtol (for callers that
// look at both ends).
template <class F>
std::pair<double, double> solve_bracketed(const F& f, double lo, double hi, double flo, double fhi, double rtol) {
  if (flo == 0.0) return {lo, lo};
  if (fhi == 0.0) return {hi, hi};
  auto tol = [rtol](double a, double b) { return std::fabs(b - a) <= rtol * std::min(std::fabs(a), std::fabs(b)); };
  return narrow_bracket(f, Bracket{lo, hi, flo, fhi}, tol, 200);
}

}  // namespace detail
}  // namespace edgeworth
