//! Small, tested statistics: Welch's t-test, the Mann-Whitney U test, and the
//! distributions they need (Student's t through the regularized incomplete beta function,
//! the normal through `erfc`). Numerical Recipes algorithms, double precision.

/// Mean and sample variance; `None` for fewer than two values.
pub(crate) fn mean_var(x: &[f64]) -> Option<(f64, f64)> {
    if x.len() < 2 {
        return None;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    Some((mean, var))
}

/// The mean of `x` (0 when empty).
pub(crate) fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { x.iter().sum::<f64>() / x.len() as f64 }
}

/// The median of `x` (`None` when empty).
pub fn median(x: &[f64]) -> Option<f64> {
    if x.is_empty() {
        return None;
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 })
}

/// The `q` quantile of values sorted ascending: the value at rank `floor((n - 1) * q)`
/// (`None` when empty). Every p99 of request detail uses this one rank.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((last as f64 * q).floor() as usize).min(last)])
}

/// Welch's two-sample t-test: the two-sided p-value that `a` and `b` have the same mean.
/// `None` with fewer than two values on a side. Two constant, different samples give 0;
/// two constant, equal ones give 1.
pub(crate) fn welch_t_test(a: &[f64], b: &[f64]) -> Option<f64> {
    let (ma, va) = mean_var(a)?;
    let (mb, vb) = mean_var(b)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let se2 = va / na + vb / nb;
    if se2 <= 0.0 {
        return Some(if ma == mb { 1.0 } else { 0.0 });
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / ((va / na).powi(2) / (na - 1.0) + (vb / nb).powi(2) / (nb - 1.0));
    Some(student_t_two_sided(t, df))
}

/// Two-sided p-value of Student's t distribution with `df` degrees of freedom.
pub(crate) fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// The Mann-Whitney U test (normal approximation with tie correction, which is accurate
/// from about 8 values a side): the two-sided p-value that neither sample tends to be
/// larger, and the common-language effect size `P(a > b) + P(a = b) / 2`.
pub(crate) fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (na, nb) = (a.len(), b.len());
    let mut all: Vec<(f64, bool)> = a.iter().map(|v| (*v, true)).chain(b.iter().map(|v| (*v, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += all[i..=j].iter().filter(|e| e.1).count() as f64 * rank;
        i = j + 1;
    }
    let (fa, fb, fnn) = (na as f64, nb as f64, n as f64);
    let u = rank_sum_a - fa * (fa + 1.0) / 2.0;
    let effect = u / (fa * fb);
    let mu = fa * fb / 2.0;
    let sigma2 = fa * fb / 12.0 * ((fnn + 1.0) - tie_term / (fnn * (fnn - 1.0)).max(1.0));
    if sigma2 <= 0.0 {
        return Some((1.0, effect));
    }
    // Continuity correction.
    let z = ((u - mu).abs() - 0.5).max(0.0) / sigma2.sqrt();
    Some(((2.0 * normal_sf(z)).clamp(0.0, 1.0), effect))
}

/// `P(Z > z)` for a standard normal `Z`.
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes `erfcc`, relative error < 1.2e-7).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let ans = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { ans } else { 2.0 - ans }
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function `I_x(a, b)`.
pub(crate) fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) { front * beta_cf(a, b, x) / a } else { 1.0 - front * beta_cf(b, a, 1.0 - x) / b }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-14 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn student_t_matches_tables() {
        // scipy.stats.t.sf(2.0, 10) * 2 = 0.07338803477074024
        assert!(close(student_t_two_sided(2.0, 10.0), 0.073_388_034_770_740_24, 1e-9));
        // scipy.stats.t.sf(3.5, 4) * 2 = 0.024896163460222748
        assert!(close(student_t_two_sided(3.5, 4.0), 0.024_896_163_460_222_748, 1e-9));
        assert!(close(student_t_two_sided(0.0, 7.0), 1.0, 1e-12));
    }

    #[test]
    fn welch_matches_scipy() {
        // scipy 1.x: stats.ttest_ind(a, b, equal_var=False).pvalue = 0.00022457801957345488
        let a = [10.1, 9.8, 10.3, 10.0, 9.9, 10.2];
        let b = [10.9, 11.2, 10.8, 11.5, 11.0];
        let p = welch_t_test(&a, &b).unwrap();
        assert!(close(p, 0.000_224_578_019_573_454_88, 1e-9), "{p}");
        assert_eq!(welch_t_test(&[1.0], &b), None);
        assert_eq!(welch_t_test(&[2.0, 2.0], &[3.0, 3.0]), Some(0.0));
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy: stats.mannwhitneyu(a, b, alternative='two-sided', method='asymptotic').pvalue
        // = 0.007985117693224414
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let b = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0];
        let (p, effect) = mann_whitney(&a, &b).unwrap();
        assert!(close(p, 0.007_985_117_693_224_414, 1e-6), "{p}");
        assert!(effect < 0.2);
    }

    #[test]
    fn normal_tail() {
        assert!(close(normal_sf(1.959_963_985), 0.025, 1e-7));
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
    }
}
