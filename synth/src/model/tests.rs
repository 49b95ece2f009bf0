use super::tables::*;
use super::*;
use ctstats_schemas::code_list_names;
use ctstats_schemas::countries;

fn valid(list: &str, table: &[(&str, u32)]) {
    let names = code_list_names(list).unwrap();
    for (code, _) in table {
        assert!(names.contains(code), "{code} is not a {list} code");
    }
}

#[test]
fn tables_use_canonical_codes() {
    valid("exploitation_type", LABOUR_DOMINANT);
    valid("exploitation_type", SEX_DOMINANT);
    valid("labour_sector", code_weights("labour_sector"));
    valid("means_of_control", code_weights("means_of_control"));
    valid("recruiter_relation", code_weights("recruiter_relation"));
    valid("referral_source", code_weights("referral_source"));
    valid("assistance_type", code_weights("assistance_type"));
    valid("trafficking_status", code_weights("trafficking_status"));
    valid("return_type", code_weights("return_type"));
    valid(
        "reintegration_outcome",
        code_weights("reintegration_outcome"),
    );
    for table in [
        DESTINATIONS_CA_LABOUR,
        DESTINATIONS_CA_SEX,
        DESTINATIONS_EE_LABOUR,
        DESTINATIONS_EE_SEX,
        DESTINATIONS_OTHER,
    ] {
        for (c, _) in table {
            assert!(*c == HOME || countries::by_alpha3(c).is_some(), "{c}");
        }
    }
    for m in ["KAZ", "KGZ", "TJK", "UZB", "MDA", "UKR", "XXX"] {
        for (c, _) in foreign_pool(m) {
            assert!(countries::by_alpha3(c).is_some(), "{c}");
        }
    }
}

#[test]
fn persons_rebuild_identically() {
    let config = Config::default();
    let ctx = Ctx::new(&config).unwrap();
    for index in 0..50 {
        let a = rebuild(&ctx, index, 0);
        let b = rebuild(&ctx, index, 0);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        for e in &a.episodes {
            assert!(e.registration >= ctx.first_day && e.registration <= ctx.last_day);
            assert!(a.birth < month_start(e.registration));
            if let Some(c) = e.closed {
                assert!(c >= e.registration);
            }
            assert!((12..=70).contains(&e.age), "{}", e.age);
        }
    }
}

#[test]
fn document_numbers_are_unique() {
    let config = Config::default();
    let ctx = Ctx::new(&config).unwrap();
    let mut seen = std::collections::HashSet::new();
    for index in 0u64..20_000 {
        let n = (index * 7_654_321 + 1_234_567) % 10u64.pow(ctx.document_digits);
        assert!(seen.insert(n));
    }
}
