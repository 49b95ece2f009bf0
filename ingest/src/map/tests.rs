use super::*;
use crate::profile;

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

fn row(vals: &[&str]) -> Vec<Option<String>> {
    vals.iter()
        .map(|v| (!v.is_empty()).then(|| v.to_string()))
        .collect()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
}

#[test]
fn maps_a_canonical_row() {
    let p = profile::canonical();
    let mut m = Mapper::new(&p, today(), "f".into());
    m.set_header(&header(&[
        "case_id",
        "Фамилия",
        "Имя",
        "Дата рождения",
        "registration_date",
        "Пол",
        "citizenship",
        "exploitation_types",
        "shelter_offered",
        "Телефон",
    ]))
    .unwrap();
    let r = m
        .map(
            2,
            &row(&[
                "A-1",
                "Асанова",
                "Айгуль",
                "14.03.1987",
                "2005-06-20",
                "ж",
                "kg",
                "forced labour; sexual_exploitation",
                "да",
                "+996",
            ]),
        )
        .unwrap();
    assert_eq!(r.local_case_id, "A-1");
    assert_eq!(
        r.get("registration_month"),
        &Value::Month(NaiveDate::from_ymd_opt(2005, 6, 1).unwrap())
    );
    assert_eq!(r.get("gender"), &Value::Code("female"));
    assert_eq!(r.get("citizenship"), &Value::Code("KGZ"));
    assert_eq!(r.get("age_band"), &Value::Code("18-20"));
    assert_eq!(r.get("minor_at_registration"), &Value::Flag(false));
    assert_eq!(
        r.get("exploitation_types"),
        &Value::Codes(vec!["forced_labour", "sexual_exploitation"])
    );
    assert_eq!(r.get("shelter_offered"), &Value::Flag(true));
    assert_eq!(m.column_use().dropped, vec!["Телефон".to_string()]);
}

#[test]
fn reports_every_broken_rule_without_values() {
    let p = profile::canonical();
    let mut m = Mapper::new(&p, today(), "f".into());
    m.set_header(&header(&[
        "case_id",
        "registration_month",
        "gender",
        "citizenship",
        "birth_date",
        "shelter_offered",
        "shelter_accepted",
    ]))
    .unwrap();
    let issues = m
        .map(
            7,
            &row(&[
                "",
                "2031-01-01",
                "Secretname",
                "Atlantis",
                "1987-13-45",
                "no",
                "yes",
            ]),
        )
        .unwrap_err();
    let rules: Vec<_> = issues
        .iter()
        .map(|i| (i.column.as_str(), i.rule.name()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("registration_month", "date_in_future"),
            ("gender", "unknown_code"),
            ("citizenship", "invalid_country"),
            ("case_id", "required"),
            ("birth_date", "invalid_date"),
            ("shelter_accepted", "accepted_without_offer"),
        ]
    );
    assert!(issues.iter().all(|i| i.row == 7));
    let text = format!("{issues:?}");
    assert!(
        !text.contains("Secretname") && !text.contains("Atlantis") && !text.contains("1987-13-45")
    );
}

#[test]
fn header_without_required_column_is_refused() {
    let p = profile::canonical();
    let mut m = Mapper::new(&p, today(), "f".into());
    let err = m.set_header(&header(&["case_id", "gender"])).unwrap_err();
    assert_eq!(err.problem.rule, "missing_column");
    assert_eq!(err.target, "registration_month");
}

#[test]
fn ctdc_flags_and_quirks() {
    let p = profile::ctdc();
    let mut m = Mapper::new(&p, today(), "file".into());
    m.set_header(&header(&[
        "yearOfRegistration",
        "gender",
        "ageBroad",
        "majorityStatus",
        "citizenship",
        "CountryofExploitation",
        "isForcedLabour",
        "isSexualExploit",
        "meansOfControlDebtBondage",
        "typeOfLabourConstruction",
    ]))
    .unwrap();
    let r = m
        .map(
            3,
            &row(&[
                "2016", "Female", "18--20", "Adult", "NA", "ZZ", "1.0", "0.0", "-99", "1",
            ]),
        )
        .unwrap();
    assert_eq!(r.local_case_id, "file:3");
    assert_eq!(
        r.get("registration_month"),
        &Value::Month(NaiveDate::from_ymd_opt(2016, 1, 1).unwrap())
    );
    assert_eq!(r.get("citizenship"), &Value::Code("NAM"));
    assert_eq!(r.get("country_of_exploitation"), &Value::Null);
    assert_eq!(r.get("age_band"), &Value::Code("18-20"));
    assert_eq!(r.get("minor_at_registration"), &Value::Flag(false));
    assert_eq!(
        r.get("exploitation_types"),
        &Value::Codes(vec!["forced_labour"])
    );
    assert_eq!(r.get("means_of_control"), &Value::Null);
    assert_eq!(r.get("labour_sectors"), &Value::Codes(vec!["construction"]));
}

#[test]
fn dates_in_common_formats() {
    let f: Vec<String> = profile::canonical().date_formats;
    let d = |s| parse_date(s, &f);
    let want = NaiveDate::from_ymd_opt(2005, 3, 14);
    assert_eq!(d("2005-03-14"), want);
    assert_eq!(d("14.03.2005"), want);
    assert_eq!(d("14/03/2005"), want);
    assert_eq!(d("2005-03-14T10:00:00"), want);
    assert_eq!(d("2005-03"), NaiveDate::from_ymd_opt(2005, 3, 1));
    assert_eq!(d("03.2005"), NaiveDate::from_ymd_opt(2005, 3, 1));
    assert_eq!(d("2005-02-30"), None);
    assert_eq!(d("yesterday"), None);
}

#[test]
fn ctdc_takes_the_value_forms_of_real_exports_and_still_refuses_wrong_values() {
    let p = profile::ctdc();
    let mut m = Mapper::new(&p, today(), "file".into());
    let cols = [
        "yearOfRegistration",
        "ageBroad",
        "citizenship",
        "CountryOfExploitation",
        "isForcedLabour",
        "isSexualExploit",
    ];
    m.set_header(&header(&cols)).unwrap();
    // `0` for unknown countries, a float year, an empty age band, empty and float flags.
    let r = m
        .map(2, &row(&["2019.0", "", "0", "0", "1.0", ""]))
        .unwrap();
    assert_eq!(r.get("citizenship"), &Value::Null);
    assert_eq!(r.get("country_of_exploitation"), &Value::Null);
    assert_eq!(r.get("age_band"), &Value::Null);
    assert_eq!(
        r.get("exploitation_types"),
        &Value::Codes(vec!["forced_labour"])
    );
    // The codebook's own dash and the `+` band.
    let r = m
        .map(3, &row(&["2019", "30—38", "UA", "RU", "", ""]))
        .unwrap();
    assert_eq!(r.get("age_band"), &Value::Code("30-38"));
    assert_eq!(r.get("exploitation_types"), &Value::Null);
    let r = m
        .map(4, &row(&["2019", "48+", "UA", "RU", "", ""]))
        .unwrap();
    assert_eq!(r.get("age_band"), &Value::Code("48+"));
    // Genuinely wrong values are still refused, each naming its column and rule.
    let issues = m
        .map(5, &row(&["2019", "18-99", "1", "Atlantis", "2", ""]))
        .unwrap_err();
    let got: Vec<(&str, Rule)> = issues.iter().map(|i| (i.column.as_str(), i.rule)).collect();
    assert_eq!(
        got,
        [
            ("ageBroad", Rule::UnknownCode),
            ("citizenship", Rule::InvalidCountry),
            ("CountryOfExploitation", Rule::InvalidCountry),
            ("isForcedLabour", Rule::InvalidFlag),
        ]
    );
    // `0` is a CTDC form only: the canonical profile still refuses it as a country.
    let c = profile::canonical();
    let mut m = Mapper::new(&c, today(), "file".into());
    m.set_header(&header(&["case_id", "registration_month", "citizenship"]))
        .unwrap();
    let issues = m.map(2, &row(&["c1", "2019-01", "0"])).unwrap_err();
    assert_eq!(issues[0].rule, Rule::InvalidCountry);
}

proptest::proptest! {
    /// A memo shared by every row gives each row exactly what mapping it alone gives (values,
    /// case id, identity, every issue with its row, column and rule), for valid and broken
    /// cells, empty cells and defaults, and after the header changes under the same memo.
    #[test]
    fn mapping_with_a_memo_equals_mapping_each_row_alone(
        picks in proptest::collection::vec(proptest::collection::vec(0usize..64, 12), 1..40),
        shift_after in 0usize..40,
    ) {
        let pools: [&[&str]; 12] = [
            &["A-1", "A-2", "", "B 7"],
            &["Асанова", "ASANOVA", "", "н/д", "  Не  указано "],
            &["Айгуль", "", "-", "Nurlan"],
            &["14.03.1987", "1987-03-14", "31.02.1990", "", "03.2001", "01.01.1850", "2030-01-01"],
            &["2005-06-20", "2019-02", "", "20.06.2005", "not a date", "1989-12-31", "2099-01-01"],
            &["ж", "м", "female", "MALE", "x", "", "не указано"],
            &["kg", "KGZ", "Kyrgyzstan", "zz", "Atlantis", "", "RU"],
            &["forced labour; sexual_exploitation", "forced_labour", "nothing known", "", "begging;;"],
            &["да", "нет", "1", "0", "maybe", ""],
            &["да", "нет", "yes", "", "perhaps"],
            &["33", "17", "", "121", "4.5", "-1"],
            &["RU", "kz", "", "Narnia"],
        ];
        let cols = [
            "case_id", "Фамилия", "Имя", "Дата рождения", "registration_date", "Пол",
            "citizenship", "exploitation_types", "shelter_offered", "shelter_accepted", "age",
            "country_of_exploitation",
        ];
        let p = profile::canonical();
        let mut alone = Mapper::new(&p, today(), "f".into());
        let mut remembering = Mapper::new(&p, today(), "f".into());
        alone.set_header(&header(&cols)).unwrap();
        remembering.set_header(&header(&cols)).unwrap();
        let mut memo = MapMemo::default();
        let mut shifted = false;
        for (n, pick) in picks.iter().enumerate() {
            let mut cells: Vec<&str> = pick.iter().zip(pools).map(|(i, pool)| pool[i % pool.len()]).collect();
            if n == shift_after {
                // A longer header: every column moves one place.
                let mut longer = vec!["note"];
                longer.extend(cols);
                alone.set_header(&header(&longer)).unwrap();
                remembering.set_header(&header(&longer)).unwrap();
                shifted = true;
            }
            if shifted {
                cells.insert(0, "free text");
            }
            let number = n as u64 + 2;
            let expected = format!("{:?}", alone.map(number, &row(&cells)));
            let got = format!("{:?}", remembering.map_with(&mut memo, number, &row(&cells)));
            proptest::prop_assert_eq!(got, expected, "row {}", number);
        }
    }
}
