// The certified answer: the one place where a certified eps (or delta) is
// assembled from the bounds.
//
// kCertifiedBounds below is the ordered table of the bounds, and the only list
// of them in the project: docstrings and documents point here.  Each bound,
// per ordering, either answers with a value or declines by name (Decline, a
// value, not an exception); the certified answer is the smallest value over
// the bounds that answered, then the larger ordering.  Every bound is a valid
// upper bound on its own, so a decline only ever costs tightness.
//
// A bound is skipped, never tried, only where a named predicate below says it
// cannot help (count_bound_is_exact, beyond_quadrature, count_is_zero,
// jump_bound_is_tight, add_cannot_dominate, cf_floor_reached,
// paper_bound_may_help).  Each try,
// skip and decline is recorded in the answer's trace with its time.
//
// Exceptions: the bounds' numerics signal "cannot answer here" from deep
// inside (a quadrature that does not converge) by the tag
// detail::DeclineSignal (mechanisms.hpp); `attempt` below turns that tag, and
// nothing else, into the bound's Decline.  Any other exception (a bug, a
// broken precondition) reaches the caller.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "bounds.hpp"
#include "cf_bound.hpp"
#include "edgeworth_bounds.hpp"
#include "mechanisms.hpp"
#include "rare_jump.hpp"
#include "sampled_count.hpp"

namespace edgeworth {

// Which bound or estimate gave an answer.
enum class Source : int {
  Estimate = 0,
  Chernoff = 1,
  CharacteristicFunction = 2,
  SampledCount = 3,
  EdgeworthBound = 4,
  RareJump = 5
};

// Which method gave an estimate (method="tilted"), in the order the estimate
// tries them (inversion.hpp, estimate_epsilon / estimate_delta); None for
// certified and Edgeworth answers.
enum class EstimateMethod : int {
  None = -1,
  ExactOneStep = 0,            // one step of the subsampled Gaussian: the exact curve
  SaddlePoint = 1,             // the single saddle point (saddlepoint.hpp)
  ConditionedInversion = 2,    // its conditioned Laplace inversion (conditioned.hpp)
  CharacteristicFunction = 3,  // the characteristic-function inversion's central value (cf_bound.hpp)
};
inline constexpr const char* kEstimateMethodNames[] = {"exact_one_step", "saddle_point", "conditioned_inversion",
                                                       "characteristic_function"};
inline const char* estimate_method_name(EstimateMethod m) {
  return m == EstimateMethod::None ? "" : kEstimateMethodNames[static_cast<int>(m)];
}

// One row of the table.
struct CertifiedBound {
  Source source;
  const char* name;      // as in the trace and in Answer.source
  const char* orderings;  // which orderings it is tried for
  const char* what;      // one line: what it is, where it is tight
};

// The bounds, in the order in which they are tried (docs/certified.md
// follows this order, one section each).
inline constexpr CertifiedBound kCertifiedBounds[] = {
    {Source::SampledCount, "sampled_count", "both",
     "conditions on the number of sampled steps (a binomial law per segment) and bounds each count's loss exactly; "
     "the exact curve at one step of the subsampled Gaussian (sampled_count.hpp)"},
    {Source::Chernoff, "chernoff", "both",
     "the optimal Chernoff/Renyi bound from the exact CGF over a continuous order, with the conversion of Canonne, "
     "Kamath and Steinke (arXiv 2004.00010); always answers (bounds.hpp)"},
    {Source::RareJump, "rare_jump", "remove",
     "splits the composition on whether any sampled step jumps; tight where few steps are sampled in all "
     "(rare_jump.hpp)"},
    {Source::CharacteristicFunction, "characteristic_function", "both",
     "the exact inversion of the privacy loss's characteristic function on a tilted line, every error term "
     "bounded; plain, then split at the flat part, then truncated; within ~1e-6 of the truth where ten or more "
     "steps are sampled in all; the subsampled Gaussian and Gaussian mixtures (ELS), not the subsampled Laplace "
     "mechanism (cf_bound.hpp)"},
    {Source::EdgeworthBound, "edgeworth_bound", "both",
     "the Edgeworth accountant's own certified bound (order-1 expansion plus the Derumigny-Girard-Guyonvarch "
     "error), for i.i.d. steps and large delta only (edgeworth_bounds.hpp)"},
};

inline const char* source_name(Source s) {
  for (const auto& b : kCertifiedBounds)
    if (b.source == s) return b.name;
  return "estimate";
}

// A bound's named refusal to answer: which bound, and why.
struct Decline {
  std::string bound;
  std::string reason;
};
template <class T>
using Outcome = std::variant<T, Decline>;

// One line of the trace: a bound tried (answered or declined) or skipped.
struct TraceEntry {
  std::string bound;
  std::string ordering;  // "remove", "add" or "both"
  std::string status;    // "answered", "declined" or "skipped"
  double value = std::numeric_limits<double>::quiet_NaN();  // answered only
  std::string reason;    // declined / skipped: why (for a skip, the predicate's name first)
  double seconds = 0.0;
};
using Trace = std::vector<TraceEntry>;

// One evaluation of a noise calibration (calibrate_noise): the sigma tried,
// the eps there under the method, and what gave it.
struct CalibrationStep {
  double sigma = 0.0;
  double eps = std::numeric_limits<double>::quiet_NaN();  // NaN where the method declined
  bool meets = false;   // eps <= the target
  bool cheap = false;   // certified without the characteristic-function bound (the cheap phase)
  std::string source;   // the bound (certified) or estimate method that gave eps
  std::string reason;   // declined: why
  double seconds = 0.0;
};

// One answer: the value, the bound or estimate that gave it, the ordering
// that gave it, and for certified answers the Chernoff order t, the numerical
// margin and the trace.
struct Answer {
  Source source = Source::Estimate;
  double value = 0.0;
  Ordering ordering = Ordering::Remove;
  bool certified = false;
  double t = std::numeric_limits<double>::quiet_NaN();  // certified: the Chernoff bound's order t (NaN when another bound answered alone)
  double margin = 0.0;
  Trace trace;  // certified: how the value was assembled
  EstimateMethod estimate_method = EstimateMethod::None;  // method="tilted": which method gave the value
  // noise calibrations: every evaluation, in the order made (the value is
  // the least sigma whose eps met the target; trace is that eps's trace)
  std::vector<CalibrationStep> calibration;
};

// What the caller may ask of the certified assembly.
struct CertifiedOptions {
  // Leave out the characteristic-function bound (a looser but ~10-50x cheaper
  // valid bound; calibrate_noise's cheap phase).
  bool without_cf = false;
  // Test hook: the bound of this name throws std::runtime_error when tried,
  // to show that a failure inside a bound reaches the caller.  Empty: none.
  std::string fail_bound;
  // Internal (delta_at_zero_eps): try the characteristic-function bound even
  // where jump_bound_is_tight would skip it, so that the eps found is the
  // smallest of all the bounds (and falls with delta where each does).
  bool no_jump_skip = false;
};

// ---------------------------------------------------------------------------
// The skip rules, each a named predicate.

namespace detail {

// One step of the subsampled Gaussian: there the sampled-count bound is the
// exact curve (sampled_count.hpp), and no other bound can be smaller.
inline bool count_bound_is_exact(const Composition& c) {
  return c.segments().size() == 1 && c.segments()[0].count == 1.0 &&
         c.segments()[0].mechanism->subsampled_gaussian_parameters().has_value();
}

// Whether some mechanism of c lies beyond what the CGF quadratures resolve: a
// mixture with a mean past kMixtureMeanMax (mechanisms.hpp).  There only the
// sampled-count bound, which needs no quadrature, may answer.
inline bool beyond_quadrature(const Composition& c) {
  for (const auto& seg : c.segments())
    if (!seg.mechanism->within_quadrature_range()) return true;
  return false;
}

// Nothing beats a sampled-count bound of 0.
inline bool count_is_zero(const std::optional<double>& count) { return count && *count == 0.0; }

// The Edgeworth accountant's own certified bound (order-1 expansion plus the
// DGG error Delta, edgeworth_bounds.hpp) is for i.i.d. steps, and can only be
// informative once Delta, which is at least 0.1995 / sqrt(n) (Lyapunov:
// K3 >= 1), is below delta.  Skipping it elsewhere only ever forgoes a
// tighter bound; it never affects validity.
inline bool paper_bound_may_help(const Composition& c, double delta) {
  return c.segments().size() == 1 && delta > 0.1995 / std::sqrt(c.segments()[0].count);
}

// Where the sampling rate is at most kJumpSkipQ, at most kJumpSkipMean
// sampled steps are expected, and the rare-jump bound is within these
// factors of the one-jump approximation (eps, and delta), the
// characteristic-function bound is not tried: it costs 20 to 100 ms there
// (q = 1e-7) and gained at most 4 % on random configurations of that regime
// (median 0).  (With larger q the approximation can sit above the
// truth, and the retries gain up to 5 %: sigma 1.068, q 6.6e-3, 18 steps,
// delta 1e-12: 1.7219 by the rare-jump bound, 1.646 by the split.)
constexpr double kJumpTightEps = 1.05, kJumpTightDelta = 2.0;
constexpr double kJumpSkipQ = 1e-5, kJumpSkipMean = 0.15;

// Whether c is in that regime (subsampled Gaussian steps only).
inline bool jump_regime(const Composition& c) {
  double sampled = 0.0;
  for (const auto& seg : c.segments()) {
    const auto sg = seg.mechanism->subsampled_gaussian_parameters();
    if (!sg || sg->q > kJumpSkipQ) return false;
    sampled += seg.count * sg->q;
  }
  return sampled <= kJumpSkipMean;
}

// The paper's certified delta_upper(eps) over both orderings (1 if vacuous).
inline double paper_delta_upper(const Composition& c, double eps) {
  const auto& seg = c.segments()[0];
  const PllrCentredMoments x = pllr_centred_moments(*seg.mechanism, 0.0), y = pllr_centred_moments(*seg.mechanism, 1.0);
  const double dx = dgg_delta_for_steps(x, seg.count).value, dy = dgg_delta_for_steps(y, seg.count).value;
  EdgeworthBoundInputs rm = edgeworth_bound_inputs(x, y, seg.count), ad = edgeworth_bound_inputs(y.negated(), x.negated(), seg.count);
  rm.delta_x = dx;
  rm.delta_y = dy;
  ad.delta_x = dy;
  ad.delta_y = dx;
  return std::min(1.0, std::max({0.0, edgeworth_delta_upper(rm, eps), edgeworth_delta_upper(ad, eps)}));
}

// The add ordering matters only where its answer exceeds the remove
// ordering's (the certified answer is the larger), so its
// characteristic-function bound is asked for no eps below that answer, the
// floor (cf_epsilon's eps_floor): once one of its stages certifies the floor
// (the plain inversion, or a retry), the search and the later retries stop and
// the floor is the add ordering's value.  The certified answer is unchanged:
// the add ordering's true minimum is then at or below the floor, and the
// larger ordering is the remove ordering's answer either way.
inline bool cf_floor_reached(const std::optional<double>& cf, double floor) {
  return floor > 0.0 && cf && *cf <= floor;
}

inline const char* orderings_name(std::optional<Ordering> o) { return o ? ordering_name(*o) : "both"; }

// The trace and the test hook of one assembly.
class Assembly {
 public:
  explicit Assembly(const CertifiedOptions& opts) : opts_(opts) {}

  // Runs one bound: f() returns Outcome<double>.  The decline signal of the
  // numerics (DeclineSignal) becomes the bound's Decline; anything else
  // propagates.  Returns the value, or nullopt where the bound declined.
  template <class F>
  std::optional<double> attempt(const char* bound, std::optional<Ordering> o, const F& f) {
    const auto t0 = std::chrono::steady_clock::now();
    if (opts_.fail_bound == bound)
      throw std::runtime_error(std::string("injected failure in the bound '") + bound + "' (test hook)");
    Outcome<double> r = [&]() -> Outcome<double> {
      try {
        return f();
      } catch (const DeclineSignal& d) {  // the decline type, and nothing else (see the top of this file)
        return Decline{bound, d.reason()};
      }
    }();
    TraceEntry e;
    e.bound = bound;
    e.ordering = orderings_name(o);
    e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::optional<double> out;
    if (const double* v = std::get_if<double>(&r)) {
      e.status = "answered";
      e.value = *v;
      out = *v;
    } else {
      e.status = "declined";
      e.reason = std::get<Decline>(r).reason;
    }
    trace_.push_back(std::move(e));
    return out;
  }

  // Records that a named predicate skipped a bound.
  void skip(const char* bound, std::optional<Ordering> o, const char* predicate, const std::string& why) {
    TraceEntry e;
    e.bound = bound;
    e.ordering = orderings_name(o);
    e.status = "skipped";
    e.reason = std::string(predicate) + ": " + why;
    trace_.push_back(std::move(e));
  }

  const CertifiedOptions& options() const { return opts_; }
  Trace take_trace() { return std::move(trace_); }

 private:
  const CertifiedOptions& opts_;
  Trace trace_;
};

// An optional value as an Outcome: nullopt becomes the named decline.
inline Outcome<double> or_decline(const std::optional<double>& v, const char* bound, const std::string& reason) {
  if (v) return *v;
  return Decline{bound, reason};
}

// The one-step exact curve's answer: the larger ordering.
inline Answer exact_one_step(const std::optional<double> (&count)[2]) {
  Answer a;
  a.certified = true;
  a.source = Source::SampledCount;
  const double rm = *count[static_cast<int>(Ordering::Remove)], ad = *count[static_cast<int>(Ordering::Add)];
  a.value = std::max(rm, ad);
  a.ordering = ad > rm ? Ordering::Add : Ordering::Remove;
  return a;
}

// What differs between eps(delta) and delta(eps); the assembly is shared.
struct EpsilonQuery {
  double delta;
  bool try_cf;
  static constexpr double kJumpTight = kJumpTightEps;
  static constexpr bool kCfFloor = true;  // cf_floor_reached applies
  static constexpr double kTrivial = std::numeric_limits<double>::infinity();
  std::optional<double> count(const SampledCountLaw& law, Ordering o) const { return sampled_count_epsilon(law, o, delta); }
  Bound chernoff(const Composition& c, Ordering o, double t_hint) const {
    return certified_epsilon(c, o, delta, t_hint);
  }
  double chernoff_at(const Composition& c, Ordering o, double t) const { return chernoff_epsilon_at(c, o, delta, t).value; }
  std::optional<double> jump(const Composition& c, double chernoff) const { return rare_jump_epsilon(c, delta, chernoff); }
  std::optional<double> one_jump(const Composition& c) const { return one_jump_epsilon(c, delta); }
  // The characteristic-function bound below `hi` (the smaller of the Chernoff
  // and rare-jump values): it answers only where it improves on hi.
  std::optional<double> cf(const Composition& c, Ordering o, const Bound& b, double hi, double floor) const {
    return cf_epsilon(c, o, delta, hi, b.t, floor);
  }
  bool cf_wanted(double hi) const { return try_cf && hi > 0.0; }
  // The paper's bound: its value and ordering, or a decline.
  std::optional<std::pair<double, Ordering>> paper(const Composition& c, const Answer&, std::string& why) const {
    const auto& seg = c.segments()[0];
    const EdgeworthBoundResult e = edgeworth_bound(*seg.mechanism, seg.count, delta);
    if (e.vacuous_upper) {
      why = "vacuous: its error term exceeds delta";
      return std::nullopt;
    }
    return std::make_pair(e.eps_upper, e.ordering);
  }
  double paper_level(const Answer&) const { return delta; }
};

struct DeltaQuery {
  double eps;
  static constexpr double kJumpTight = kJumpTightDelta;
  static constexpr bool kCfFloor = false;  // (cf_delta keeps no floor)
  static constexpr double kTrivial = 1.0;
  std::optional<double> count(const SampledCountLaw& law, Ordering o) const { return sampled_count_delta(law, o, eps); }
  Bound chernoff(const Composition& c, Ordering o, double t_hint) const {
    return certified_delta(c, o, eps, t_hint);
  }
  double chernoff_at(const Composition& c, Ordering o, double t) const { return chernoff_delta_at(c, o, eps, t).value; }
  std::optional<double> jump(const Composition& c, double) const { return rare_jump_delta(c, eps); }
  std::optional<double> one_jump(const Composition& c) const { return one_jump_delta(c, eps); }
  std::optional<double> cf(const Composition& c, Ordering o, const Bound& b, double, double) const {
    // (the Chernoff t is a good tilt only where its bound is not vacuous)
    const auto d = cf_delta(c, o, eps, b.value < 1.0 ? b.t : 0.0);
    return d ? std::optional<double>(d->upper) : std::nullopt;
  }
  bool cf_wanted(double) const { return true; }
  std::optional<std::pair<double, Ordering>> paper(const Composition& c, const Answer& a, std::string&) const {
    return std::make_pair(paper_delta_upper(c, eps), a.ordering);
  }
  double paper_level(const Answer& a) const { return a.value; }
};

// The smaller of a and a bound's value v (where it answered), which then
// names its source (ties keep the earlier source).
inline void keep_smaller(Answer& a, const std::optional<double>& v, Source source) {
  if (v && *v < a.value) {
    a.value = *v;  // t stays the Chernoff order computed alongside
    a.margin = 0.0;
    a.source = source;
  }
}

// The certified answer of one ordering given its Chernoff bound b and its
// sampled-count value: the rare-jump bound (remove ordering), then the
// characteristic-function bound, each unless a predicate rules it out.
// floor: no answer below it is needed (cf_floor_reached); 0 for none.
template <class Query>
Answer one_ordering(Assembly& as, const Composition& c, const Query& qy, Ordering o, const Bound& b,
                    const std::optional<double>& count, double floor = 0.0) {
  const char* jump_name = source_name(Source::RareJump);
  const char* cf_name = source_name(Source::CharacteristicFunction);
  const bool zero = count_is_zero(count);
  std::optional<double> jump;
  bool jump_tight = false;
  if (o != Ordering::Remove) {
    // (the table's "orderings" column: not a skip, so not traced)
  } else if (zero) {
    as.skip(jump_name, o, "count_is_zero", "the sampled-count bound is 0");
  } else if (!(b.value > 0.0)) {
    as.skip(jump_name, o, "chernoff_is_zero", "the Chernoff bound is 0");
  } else {
    jump = as.attempt(jump_name, o, [&]() -> Outcome<double> {
      return or_decline(qy.jump(c, b.value), jump_name, "more sampled steps expected than it covers, or no better than the Chernoff bound");
    });
    // jump_bound_is_tight: in the rare-jump regime, within kJumpTight of the one-jump approximation
    if (jump && jump_regime(c)) {
      std::optional<double> approx;
      try {
        approx = qy.one_jump(c);
      } catch (const DeclineSignal&) {  // (no approximation: the bound is not known to be tight)
      }
      jump_tight = approx && *jump <= Query::kJumpTight * *approx;
    }
  }
  const double hi = jump ? std::min(b.value, *jump) : b.value;
  std::optional<double> cf;
  if (zero)
    as.skip(cf_name, o, "count_is_zero", "the sampled-count bound is 0");
  else if (jump_tight && !as.options().no_jump_skip)
    as.skip(cf_name, o, "jump_bound_is_tight", "rare-jump regime, and the rare-jump bound is within a factor " +
                                                   fmt(Query::kJumpTight) + " of the one-jump approximation");
  else if (!(b.value > 0.0) || !(hi > 0.0))
    as.skip(cf_name, o, "chernoff_is_zero", "a bound already gives 0");
  else if (!qy.cf_wanted(hi))
    as.skip(cf_name, o, "without_cf", "left out on request (the calibration's cheap phase)");
  else
  {
    cf = as.attempt(cf_name, o, [&]() -> Outcome<double> {
      return or_decline(qy.cf(c, o, b, hi, floor), cf_name,
                        "the plain, split and truncated inversions declined or did not improve on " + fmt(hi));
    });
    if (cf_floor_reached(cf, floor))
      as.skip("(add ordering)", o, "cf_floor_reached",
              "the characteristic-function bound's search and later retries: it certified " + fmt(*cf) +
                  ", the remove ordering's answer, so this ordering cannot dominate");
  }
  Answer a;
  a.value = b.value;
  a.ordering = b.ordering;
  a.certified = true;
  a.source = Source::Chernoff;
  a.t = b.t;
  a.margin = b.margin;
  keep_smaller(a, cf, Source::CharacteristicFunction);
  keep_smaller(a, count, Source::SampledCount);
  keep_smaller(a, jump, Source::RareJump);
  return a;
}

// The certified answer, per kCertifiedBounds: per ordering the smallest value
// of the bounds that answered; then the larger ordering; then the paper's
// bound over both orderings where it may help.
template <class Query>
Answer assemble(const Composition& c, const Query& qy, const CertifiedOptions& opts) {
  Assembly as(opts);
  const char* count_name = source_name(Source::SampledCount);
  const char* chernoff_name = source_name(Source::Chernoff);
  const char* paper_name = source_name(Source::EdgeworthBound);
  auto done = [&](Answer a) {
    a.certified = true;
    a.trace = as.take_trace();
    return a;
  };
  // sampled_count, both orderings first (cheap; decides the skips below)
  const auto law = sampled_count_law(c);
  std::optional<double> count[2];
  for (Ordering o : {Ordering::Remove, Ordering::Add}) {
    if (!law) {
      as.skip(count_name, o, "no_count_law", "the composition has no sampled-count law (a mechanism it does not cover)");
      continue;
    }
    count[static_cast<int>(o)] = as.attempt(count_name, o, [&]() -> Outcome<double> {
      return or_decline(qy.count(*law, o), count_name, "no count law bound meets the target");
    });
  }
  if (beyond_quadrature(c)) {
    // only the sampled-count bound needs no quadrature; the trivial bound where it declined
    as.skip("(all others)", std::nullopt, "beyond_quadrature",
            "a mixture mean exceeds " + fmt(kMixtureMeanMax) + " noise standard deviations");
    Answer a;
    a.source = Source::SampledCount;
    a.value = -std::numeric_limits<double>::infinity();
    for (Ordering o : {Ordering::Remove, Ordering::Add}) {
      const double x = count[static_cast<int>(o)] ? *count[static_cast<int>(o)] : Query::kTrivial;
      if (x > a.value) {
        a.value = x;
        a.ordering = o;
      }
    }
    return done(a);
  }
  if (count[0] && count[1] && count_bound_is_exact(c)) {
    as.skip("(all others)", std::nullopt, "count_bound_is_exact",
            "one step of the subsampled Gaussian: the sampled-count bound is the exact curve");
    return done(exact_one_step(count));
  }
  auto chernoff = [&](Ordering o, double t_hint) {
    Bound b;  // (where it declines, the trivial bound: never the default value 0)
    b.value = Query::kTrivial;
    b.ordering = o;
    as.attempt(chernoff_name, o, [&]() -> Outcome<double> {
      b = qy.chernoff(c, o, t_hint);
      return b.value;
    });
    return b;
  };
  const Bound remove = chernoff(Ordering::Remove, 0.0);
  Answer best = one_ordering(as, c, qy, Ordering::Remove, remove, count[static_cast<int>(Ordering::Remove)]);
  // add_cannot_dominate: the add ordering's cheap bounds first (the count
  // bound, the Chernoff bound at the remove ordering's t, its own Chernoff
  // bound); where one is already at or below the remove ordering's answer,
  // the add ordering cannot be the larger.
  const auto& count_add = count[static_cast<int>(Ordering::Add)];
  bool add_done = false;
  const std::string below = " is at or below the remove ordering's answer " + fmt(best.value);
  if (count_add && *count_add <= best.value) {
    as.skip("(add ordering)", Ordering::Add, "add_cannot_dominate", "its sampled-count bound " + fmt(*count_add) + below);
    add_done = true;
  } else if (const double at = qy.chernoff_at(c, Ordering::Add, remove.t); at <= best.value) {
    as.skip("(add ordering)", Ordering::Add, "add_cannot_dominate",
            "its Chernoff bound at the remove ordering's order, " + fmt(at) + "," + below);
    add_done = true;
  }
  if (!add_done) {
    const Bound add = chernoff(Ordering::Add, remove.t);
    if (add.value <= best.value) {
      as.skip("(add ordering)", Ordering::Add, "add_cannot_dominate", "its Chernoff bound" + below);
    } else {
      const Answer a = one_ordering(as, c, qy, Ordering::Add, add, count_add, Query::kCfFloor ? best.value : 0.0);
      if (a.value > best.value) best = a;
    }
  }
  // edgeworth_bound, over both orderings
  if (!paper_bound_may_help(c, qy.paper_level(best))) {
    as.skip(paper_name, std::nullopt, "paper_bound_may_help",
            "false: several segments, or its error term is at least 0.1995 / sqrt(steps) >= delta");
  } else {
    std::optional<Ordering> paper_ordering;
    const auto v = as.attempt(paper_name, std::nullopt, [&]() -> Outcome<double> {
      std::string why;
      const auto p = qy.paper(c, best, why);
      if (!p) return Decline{paper_name, why};
      paper_ordering = p->second;
      return p->first;
    });
    if (v && *v < best.value) {
      best.value = *v;
      best.ordering = *paper_ordering;
      best.t = std::numeric_limits<double>::quiet_NaN();
      best.margin = 0.0;
      best.source = Source::EdgeworthBound;
    }
  }
  return done(best);
}

}  // namespace detail

// The certified eps at delta and the certified delta at eps: see kCertifiedBounds.
inline Answer certified_epsilon_answer(const Composition& c, double delta, const CertifiedOptions& opts = {}) {
  return detail::assemble(c, detail::EpsilonQuery{delta, !opts.without_cf}, opts);
}
namespace detail {

// The relative step at which delta_at_zero_eps stops: delta(epsilon(d)) <= d
// holds to this tolerance where the certified eps is 0.
constexpr double kZeroEpsRtol = 1e-5;

// delta at eps = 0 through the eps inversion.  A certified eps of 0 at some d
// proves delta(0) <= d, and the eps bounds reach 0 with settings that depend
// on d (the rare-jump cut, the characteristic function's tilt and
// truncation), which the delta bounds at eps = 0 cannot choose: at sigma
// 11.30, q 3.00e-5, 55 steps the rare-jump bound gives eps 0 at
// d = 2.21e-5, where the delta bounds at eps = 0 gave 5.83e-5 (sampled count).
// So that delta(epsilon(d)) <= d wherever epsilon(d) = 0, the smallest d seen
// with a certified eps of 0 is found by bisection in log d below the delta
// bounds' answer, to kZeroEpsRtol, and replaces it where smaller; the trace
// records it as "(epsilon inversion)".
inline void delta_at_zero_eps(const Composition& c, Answer& a, const CertifiedOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  Source source = a.source;
  CertifiedOptions all = opts;
  all.no_jump_skip = true;  // (the rare-jump skip makes eps = 0 come and go with d: sigma 3, q 1e-5, 32 steps)
  auto zero_at = [&](double d) {
    const Answer e = certified_epsilon_answer(c, d, all);
    if (e.value == 0.0 && d < a.value) source = e.source;  // (the bound that reached 0 at the d kept)
    return e.value == 0.0;
  };
  double hi = a.value;
  // (where the eps inversion does not reach 0 at the delta bounds' answer, that answer stands)
  if (!(hi > 0.0) || hi >= 1.0 || !zero_at(hi)) return;
  // (not below the smallest normal double: the eps inversion takes delta > 0, and the geometric mean below must
  // not underflow to 0; at a mixture weight of 1e-165, sqrt(lo * hi) did and delta(0) raised on delta = 0)
  const double floor = std::max(hi * 1e-12, std::numeric_limits<double>::min());
  double lo = hi;
  bool lo_zero = true;
  for (double step = 2.0; lo_zero && lo > floor; step *= step) {  // down until a d without eps = 0
    lo = std::max(floor, lo / step);
    lo_zero = zero_at(lo);
    if (lo_zero) hi = lo;
  }
  while (!lo_zero && hi / lo - 1.0 > kZeroEpsRtol) {  // then the crossing, to kZeroEpsRtol
    const double mid = std::sqrt(lo) * std::sqrt(hi);
    (zero_at(mid) ? hi : lo) = mid;
  }
  TraceEntry e;
  e.bound = "(epsilon inversion)";
  e.ordering = "both";
  e.status = "answered";
  e.value = hi;
  e.reason = "delta_at_zero_eps: the smallest delta seen at which the certified eps is 0";
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  a.trace.push_back(std::move(e));
  if (hi < a.value) {
    a.value = hi;
    a.source = source;
    a.t = std::numeric_limits<double>::quiet_NaN();
    a.margin = 0.0;
  }
}

}  // namespace detail

inline Answer certified_delta_answer(const Composition& c, double eps, const CertifiedOptions& opts = {}) {
  Answer a = detail::assemble(c, detail::DeltaQuery{eps}, opts);
  if (eps == 0.0 && !opts.without_cf) detail::delta_at_zero_eps(c, a, opts);
  return a;
}

}  // namespace edgeworth
