//! Validation of a spec against the public domains: every error names its field, all at once.

use super::*;

impl QuerySpec {
    /// Parse a JSON body. Unknown fields are refused.
    pub fn from_json(json: &str) -> Result<QuerySpec, SpecErrors> {
        serde_json::from_str(json).map_err(|e| {
            SpecErrors(vec![SpecError {
                field: "body".into(),
                message: e.to_string(),
            }])
        })
    }

    /// Check the spec against the public domains; `missions` is the mission domain.
    pub fn validate(&self, missions: &[String]) -> Result<ValidatedSpec, SpecErrors> {
        let mut errs = Errors::default();

        let period = validate_period(&self.period, &mut errs);
        let (column, bounds) = self.validate_value(&mut errs);
        let bins = self.validate_bins(bounds, &mut errs);
        let quantiles = self.validate_quantiles(&mut errs);
        let group_by = validate_group_by(&self.group_by, &mut errs);
        let filters = period
            .map(|p| validate_filters(&self.filters, missions, p, &mut errs))
            .unwrap_or_default();

        let auto_bound = matches!(self.contribution_bound, Some(ContributionBound::Chosen(_)));
        let contribution_bound = match self.contribution_bound {
            Some(ContributionBound::Records(k)) => k,
            _ => DEFAULT_CONTRIBUTION_BOUND,
        };
        if auto_bound {
            if !matches!(
                self.measure,
                Measure::Persons | Measure::Cases | Measure::Histogram
            ) {
                errs.push(
                    "contribution_bound",
                    "`auto` works with persons, cases and histogram; give a number of records",
                );
            }
            if self.keys == KeysMode::Threshold {
                errs.push(
                    "contribution_bound",
                    "`auto` works with public keys; give a number of records",
                );
            }
            if self.accuracy.is_some() {
                errs.push(
                    "contribution_bound",
                    "`auto` spends part of a budget; with an accuracy target give a number of \
                     records",
                );
            }
        }
        if !(1..=MAX_CONTRIBUTION_BOUND).contains(&contribution_bound) {
            errs.push(
                "contribution_bound",
                format!("must be from 1 to {MAX_CONTRIBUTION_BOUND} (records kept per person)"),
            );
        }
        let max_items = ExploitationType::ALL.len() as u32;
        let uses_list = group_by.contains(&Dimension::ExploitationType)
            || filters
                .iter()
                .any(|(d, _)| *d == Dimension::ExploitationType);
        let list_items_bound = match self.list_items_bound {
            // Without exploitation_type the bound has no effect: canonically the default.
            _ if !uses_list => DEFAULT_LIST_ITEMS_BOUND,
            Some(m) if !(1..=max_items).contains(&m) => {
                errs.push(
                    "list_items_bound",
                    format!("must be from 1 to {max_items} (exploitation types kept per record)"),
                );
                DEFAULT_LIST_ITEMS_BOUND
            }
            Some(m) => m,
            None => DEFAULT_LIST_ITEMS_BOUND,
        };

        let mechanism = self.resolved_mechanism();
        let privacy = self.validate_privacy(mechanism, &mut errs);
        if self.keys == KeysMode::Threshold {
            // The threshold selects keys on a noisy count, and OpenDP's threshold mechanism is
            // discrete Laplace: a measure without a count to select on, or a quantile whose bins
            // would be dropped one by one, cannot use it.
            if !matches!(
                self.measure,
                Measure::Persons | Measure::Cases | Measure::Mean | Measure::Histogram
            ) {
                errs.push(
                    "keys",
                    format!(
                        "threshold keys work with persons, cases, mean and histogram, not `{}`",
                        self.measure.name()
                    ),
                );
            }
            if mechanism != Mechanism::Laplace {
                errs.push(
                    "mechanism",
                    "threshold keys use discrete Laplace noise; remove `mechanism` or use laplace",
                );
            }
        }

        let (Some(period), Some(privacy)) = (period, privacy) else {
            return Err(SpecErrors(errs.0));
        };
        if !errs.0.is_empty() {
            return Err(SpecErrors(errs.0));
        }
        let mut spec = ValidatedSpec {
            measure: self.measure,
            column,
            bounds,
            bins,
            quantiles,
            group_by,
            filters,
            period,
            contribution_bound,
            auto_bound,
            list_items_bound,
            mechanism,
            privacy,
            keys: self.keys,
            canonical: String::new(),
        };
        spec.check_missions_into(missions, &mut errs);
        if !errs.0.is_empty() {
            return Err(SpecErrors(errs.0));
        }
        spec.canonical =
            serde_json::to_string(&spec.canonical_spec()).expect("a spec serialises to JSON");
        Ok(spec)
    }

    fn validate_value(&self, errs: &mut Errors) -> (Option<ValueColumn>, Option<Bounds>) {
        let measure = self.measure.name();
        if !self.measure.has_value() {
            if self.column.is_some() {
                errs.push("column", format!("`{measure}` takes no column"));
            }
            if self.bounds.is_some() {
                errs.push("bounds", format!("`{measure}` takes no bounds"));
            }
            return (None, None);
        }
        let allowed = || {
            value_columns()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let column = match &self.column {
            None => {
                errs.push(
                    "column",
                    format!("`{measure}` needs a column; allowed: {}", allowed()),
                );
                None
            }
            Some(name) => {
                let c = ValueColumn::from_name(name);
                if c.is_none() {
                    errs.push(
                        "column",
                        format!("`{name}` is not a numeric column; allowed: {}", allowed()),
                    );
                }
                c
            }
        };
        let bounds = match self.bounds {
            None => {
                errs.push(
                    "bounds",
                    format!("`{measure}` needs bounds {{\"lower\": integer, \"upper\": integer}}"),
                );
                None
            }
            // `unsigned_abs`: `i64::MIN.abs()` overflows (a panic in debug, a wrap to a
            // negative number that passed this check in release).
            Some(b)
                if b.lower.unsigned_abs() > MAX_ABS_BOUND.unsigned_abs()
                    || b.upper.unsigned_abs() > MAX_ABS_BOUND.unsigned_abs() =>
            {
                errs.push(
                    "bounds",
                    format!("lower and upper must be within -{MAX_ABS_BOUND} to {MAX_ABS_BOUND}"),
                );
                None
            }
            Some(b) if b.lower >= b.upper => {
                errs.push("bounds", "lower must be less than upper");
                None
            }
            Some(b) => Some(b),
        };
        (column, bounds)
    }

    fn validate_bins(&self, bounds: Option<Bounds>, errs: &mut Errors) -> Vec<Bin> {
        let measure = self.measure.name();
        if !self.measure.has_bins() {
            if self.bins.is_some() {
                errs.push("bins", format!("`{measure}` takes no bins"));
            }
            return Vec::new();
        }
        let Some(Bounds { lower, upper }) = bounds else {
            return Vec::new();
        };
        let integers = upper - lower + 1;
        let edges: Vec<i64> = match &self.bins {
            None if self.measure == Measure::Histogram => {
                errs.push(
                    "bins",
                    "`histogram` needs bins: a number of equal-width bins or explicit lower edges",
                );
                return Vec::new();
            }
            None => equal_width(lower, integers, integers.min(DEFAULT_QUANTILE_BINS)),
            Some(Bins::Count(n)) => {
                let n = i64::from(*n);
                if n < 1 || n > integers.min(MAX_BINS as i64) {
                    errs.push(
                        "bins",
                        format!(
                            "the number of bins must be from 1 to {} (at most {MAX_BINS}, and at \
                             most the {integers} integers of the bounds)",
                            integers.min(MAX_BINS as i64)
                        ),
                    );
                    return Vec::new();
                }
                equal_width(lower, integers, n)
            }
            Some(Bins::Edges(edges)) => {
                let ok = !edges.is_empty()
                    && edges.len() <= MAX_BINS
                    && edges[0] == lower
                    && edges.windows(2).all(|w| w[0] < w[1])
                    && edges.last().is_some_and(|e| *e <= upper);
                if !ok {
                    errs.push(
                        "bins",
                        format!(
                            "explicit bins are at most {MAX_BINS} strictly increasing lower \
                             edges, the first equal to bounds.lower ({lower}), all at most \
                             bounds.upper ({upper})"
                        ),
                    );
                    return Vec::new();
                }
                edges.clone()
            }
        };
        edges
            .iter()
            .enumerate()
            .map(|(i, &lo)| Bin {
                lower: lo,
                upper: edges.get(i + 1).map_or(upper, |next| next - 1),
            })
            .collect()
    }

    fn validate_quantiles(&self, errs: &mut Errors) -> Vec<f64> {
        if self.measure != Measure::Quantile {
            if self.quantiles.is_some() {
                errs.push(
                    "quantiles",
                    format!("`{}` takes no quantiles", self.measure.name()),
                );
            }
            return Vec::new();
        }
        let Some(qs) = &self.quantiles else {
            errs.push("quantiles", "`quantile` needs quantiles, e.g. [0.5]");
            return Vec::new();
        };
        if qs.is_empty() || qs.len() > MAX_QUANTILES || qs.iter().any(|q| !(0.0..=1.0).contains(q))
        {
            errs.push(
                "quantiles",
                format!("give 1 to {MAX_QUANTILES} quantiles, each from 0 to 1"),
            );
            return Vec::new();
        }
        let mut qs: Vec<f64> = qs.iter().map(|q| q + 0.0).collect();
        qs.sort_by(f64::total_cmp);
        qs.dedup();
        qs
    }

    /// The mechanism asked for, or the default: the discrete Gaussian when a `delta` or a `rho`
    /// is given with public keys (it composes in rho, far below its epsilon sum), discrete
    /// Laplace otherwise (pure DP; threshold keys always take it).
    fn resolved_mechanism(&self) -> Mechanism {
        if let Some(m) = self.mechanism {
            return m;
        }
        let approximate = self
            .budget
            .is_some_and(|b| b.delta.is_some() || b.rho.is_some())
            || self.accuracy.is_some_and(|a| a.delta.is_some());
        if approximate && self.keys == KeysMode::Public {
            Mechanism::Gaussian
        } else {
            Mechanism::Laplace
        }
    }

    fn validate_privacy(&self, mechanism: Mechanism, errs: &mut Errors) -> Option<Privacy> {
        let needs_delta = mechanism == Mechanism::Gaussian || self.keys == KeysMode::Threshold;
        let check_delta = |field: &str, delta: Option<f64>, errs: &mut Errors| match delta {
            None if needs_delta => errs.push(
                field,
                "a delta is required with the gaussian mechanism or threshold keys",
            ),
            Some(_) if !needs_delta => errs.push(
                field,
                "delta is only used with the gaussian mechanism or threshold keys; remove it",
            ),
            Some(d) if !(d > 0.0 && d < 1.0) => errs.push(field, "delta must be in (0, 1)"),
            _ => {}
        };
        match (self.budget, self.accuracy) {
            (Some(_), Some(_)) | (None, None) => {
                errs.push("budget", "give exactly one of `budget` and `accuracy`");
                None
            }
            (
                Some(Budget {
                    epsilon: Some(_),
                    rho: Some(_),
                    ..
                }),
                None,
            ) => {
                errs.push("budget", "give `epsilon` or `rho`, not both");
                None
            }
            (
                Some(Budget {
                    epsilon: None,
                    rho: None,
                    ..
                }),
                None,
            ) => {
                errs.push(
                    "budget",
                    "give `epsilon` (with `delta` for the gaussian mechanism) or `rho` with `delta`",
                );
                None
            }
            (
                Some(Budget {
                    epsilon: None,
                    rho: Some(rho),
                    delta,
                }),
                None,
            ) => {
                let before = errs.0.len();
                if !(rho.is_finite() && rho > 0.0) {
                    errs.push("budget.rho", "must be a positive number");
                }
                if self.keys == KeysMode::Threshold {
                    errs.push(
                        "budget.rho",
                        "threshold keys are spent as (epsilon, delta); give `epsilon` and `delta`",
                    );
                } else if mechanism != Mechanism::Gaussian {
                    errs.push(
                        "budget.rho",
                        "a rho budget is spent by the gaussian mechanism; remove `mechanism` or \
                         use gaussian, or give `epsilon` for laplace",
                    );
                }
                check_delta("budget.delta", delta, errs);
                match delta {
                    Some(delta) if errs.0.len() == before => Some(Privacy::Rho { rho, delta }),
                    _ => None,
                }
            }
            (
                Some(Budget {
                    epsilon: Some(epsilon),
                    delta,
                    rho: None,
                }),
                None,
            ) => {
                let before = errs.0.len();
                if !(epsilon.is_finite() && epsilon > 0.0) {
                    errs.push("budget.epsilon", "must be a positive number");
                }
                check_delta("budget.delta", delta, errs);
                (errs.0.len() == before).then_some(Privacy::Budget { epsilon, delta })
            }
            (
                None,
                Some(Accuracy {
                    half_width_95,
                    delta,
                }),
            ) => {
                let before = errs.0.len();
                if !(half_width_95.is_finite() && half_width_95 > 0.0) {
                    errs.push("accuracy.half_width_95", "must be a positive number");
                }
                check_delta("accuracy.delta", delta, errs);
                (errs.0.len() == before).then_some(Privacy::Accuracy {
                    half_width_95,
                    delta,
                })
            }
        }
    }
}

/// Lower edges of `n` bins over the `integers` integers from `lower`: bin `i` starts at
/// `lower + floor(i * integers / n)`, so widths differ by at most one.
pub(super) fn equal_width(lower: i64, integers: i64, n: i64) -> Vec<i64> {
    (0..n).map(|i| lower + i * integers / n).collect()
}

pub(super) fn validate_period(period: &PeriodSpec, errs: &mut Errors) -> Option<Period> {
    let from = Month::parse(&period.from);
    let to = Month::parse(&period.to);
    if from.is_none() {
        errs.push(
            "period.from",
            "must be a month `YYYY-MM` (years 1900 to 2100)",
        );
    }
    if to.is_none() {
        errs.push(
            "period.to",
            "must be a month `YYYY-MM` (years 1900 to 2100)",
        );
    }
    let (from, to) = (from?, to?);
    if from > to {
        errs.push("period", "`from` must not be after `to`");
        return None;
    }
    if to.index() - from.index() + 1 > i64::from(MAX_PERIOD_MONTHS) {
        errs.push(
            "period",
            format!("at most {MAX_PERIOD_MONTHS} months (30 years)"),
        );
        return None;
    }
    Some(Period { from, to })
}

pub(super) fn all_dimension_names() -> String {
    dimensions()
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn validate_group_by(names: &[String], errs: &mut Errors) -> Vec<Dimension> {
    let mut dims = Vec::new();
    for name in names {
        match Dimension::from_name(name) {
            None => errs.push(
                "group_by",
                format!(
                    "`{name}` is not a public dimension; allowed: {}",
                    all_dimension_names()
                ),
            ),
            Some(d) if dims.contains(&d) => {
                errs.push("group_by", format!("`{name}` is listed twice"))
            }
            Some(d) => dims.push(d),
        }
    }
    dims.sort_by_key(|d| d.rank());
    dims
}

pub(super) fn validate_filters(
    filters: &BTreeMap<String, Vec<String>>,
    missions: &[String],
    period: Period,
    errs: &mut Errors,
) -> Vec<(Dimension, Vec<String>)> {
    let mut out = Vec::new();
    for (name, values) in filters {
        let field = format!("filters.{name}");
        let Some(dim) = Dimension::from_name(name) else {
            errs.push(
                field,
                format!(
                    "`{name}` is not a public dimension; allowed: {}",
                    all_dimension_names()
                ),
            );
            continue;
        };
        if values.is_empty() {
            errs.push(
                field,
                "an empty filter selects nothing; list the values kept",
            );
            continue;
        }
        let domain = dim.domain(missions, period);
        let mut ok = true;
        for v in values.iter().filter(|v| !domain.contains(v)) {
            ok = false;
            let allowed = if domain.len() > 40 {
                match dim {
                    Dimension::Country { .. } => "ISO 3166-1 alpha-3 codes or unknown".to_string(),
                    _ => format!(
                        "{} ... {} ({} values)",
                        domain[0],
                        domain[domain.len() - 1],
                        domain.len()
                    ),
                }
            } else {
                domain.join(", ")
            };
            errs.push(
                field.clone(),
                format!("`{v}` is not in the domain; allowed: {allowed}"),
            );
        }
        if ok {
            let kept = domain.into_iter().filter(|k| values.contains(k)).collect();
            out.push((dim, kept));
        }
    }
    out.sort_by_key(|(d, _)| d.rank());
    out
}
