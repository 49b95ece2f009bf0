use super::*;

#[test]
fn built_in_profiles_are_valid() {
    for p in [canonical(), htcds(), ctdc()] {
        p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
        for target in p.columns.keys().chain(p.values.keys()) {
            assert!(is_target(target), "{}: {target}", p.name);
        }
    }
}

#[test]
fn user_profile_extends_a_built_in() {
    let p = Profile::from_toml(
        "ngo.toml",
        r#"
        extends = "canonical"
        name = "ngo-osh"
        date_formats = ["%m/%d/%Y"]
        missing = ["нд"]
        [columns]
        gender = "Пол жертвы"
        local_case_id = ["Номер", "No"]
        [values.gender]
        "Ж." = "female"
        [flags]
        "Приют" = "assistance_types:shelter"
        [defaults]
        data_source = "case_management"
        "#,
    )
    .unwrap();
    assert_eq!(p.name, "ngo-osh");
    assert_eq!(p.column_names("gender")[0], "Пол жертвы");
    assert_eq!(p.values["gender"]["ж."], "female");
    assert_eq!(p.date_formats[0], "%m/%d/%Y");
    assert!(p.is_missing("нд"));
    assert_eq!(p.flags.last().unwrap().code, "shelter");
}

#[test]
fn user_profile_errors_name_the_problem() {
    let err = |t: &str| Profile::from_toml("p.toml", t).unwrap_err().to_string();
    assert!(err("[columns]\nperson_key = \"x\"").contains("unknown target \"person_key\""));
    assert!(err("[values.gender]\n\"x\" = \"woman\"").contains("not one of"));
    assert!(err("[flags]\nx = \"shelter\"").contains("target:code"));
    assert!(err("colums = 1").contains("not valid TOML"));
    assert!(err("extends = \"foo\"").contains("unknown profile"));
}

proptest::proptest! {
    // The borrowing fast path gives exactly the allocating normalisation.
    #[test]
    fn normalised_equals_the_allocating_normalisation(
        s in "[ a-zA-Z0-9_\\-\t\n\u{0b}\u{a0}ÄäДд]{0,12}"
    ) {
        let lower = s.trim().to_lowercase();
        let expected = lower.split_whitespace().collect::<Vec<_>>().join(" ");
        let got = normalised(&s);
        proptest::prop_assert_eq!(got.as_ref(), expected.as_str());
    }
}

proptest::proptest! {
    /// The allocation-free missing check answers as normalising first and comparing does, for
    /// any text: case, runs of whitespace, Cyrillic, the sigma whose lower case depends on its
    /// place, and tokens of the built-in and a user profile alike.
    #[test]
    fn the_missing_check_without_normalising_agrees_with_normalising(
        cell in "[ \\t\\u{a0}]{0,2}(?:[нНдДaAnN/ΣσςİI\\u{130}]|не указано|N / A|Не  Указано|ΣΟΣ|unknown|UNKNOWN|Н/Д|н/д|НЕТ   ДАННЫХ|NULL|-99| |\\t){0,6}[ \\t]{0,2}",
    ) {
        let mut p = ctdc();
        p.missing.extend(["нд".to_string(), "не указано".to_string(), "n / a".to_string(),
            "σος".to_string(), "i̇".to_string()]);
        for profile in [canonical(), htcds(), ctdc(), p] {
            proptest::prop_assert_eq!(
                profile.is_missing_cell(&cell),
                profile.is_missing(&normalised(&cell)),
                "{:?} in {}", cell, profile.name
            );
        }
    }
}
