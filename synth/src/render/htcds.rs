//! The columns of HTCDS 2.0 (ingest's `htcds` profile), plus canonical columns for what HTCDS
//! lacks.

use chrono::NaiveDate;

use super::spelling::{DateStyle, format_date, join};
use super::{Renderer, Row};
use crate::model::{Episode, Person, Recorded};
use crate::rng::Rng;

impl Renderer<'_> {
    pub(super) fn htcds(&self, p: &Person, e: &Episode, seq: u64, r: &mut Rng) -> Row {
        let mut row = Row::default();
        let date = |d: NaiveDate| format_date(d, DateStyle::Iso);
        row.put(
            "cas_CaseNumber",
            Some(format!("{:02}{seq:07}", self.org.number)),
        );
        row.put("org_Type", Some("NGO".to_string()));
        let (given, family) = self.names(p, e, r);
        row.put("prs_FirstName", Some(given));
        row.put("prs_SecondName", Some(family));
        row.put("prs_Birthdate", e.age_recorded.then(|| date(p.birth)));
        let document = p.document.as_ref().map(|d| self.document(d, e, r));
        row.put("prs_IdentityNumber", document);
        let gender = if p.female { "Feminine" } else { "Masculine" };
        row.put("prs_Gender", e.gender_recorded.then(|| gender.to_string()));
        let citizenship =
            (e.citizenship == Recorded::Known).then(|| self.country(p.citizenship, r));
        row.put("prs_Citizenship", citizenship);
        row.put("prs_MobilePhone", self.phone(r));
        row.put("cas_IncomingReferralDate", Some(date(e.registration)));
        row.put("identification_month", e.identification.map(date));
        row.put("case_closed_month", e.closed.map(date));
        let status = e.trafficking_status.map(|s| match s {
            "actual" => "ActualVictimOfTrafficking",
            "possible" => "PossibleVictimOfTrafficking",
            _ => "NotAVictimOfTrafficking",
        });
        row.put("vic_TraffickingStatus", status.map(str::to_string));
        let types = htcds_list(e.exploitation_types.as_deref(), exploitation_type);
        row.put("vic_TypeOfExploitation", types);
        let industry = e.labour_sectors.as_ref().and_then(|s| s.first()).map(|s| {
            match *s {
                "agriculture" | "fishing" => "A_AgricultureForestryAndFishing",
                "mining" => "B_MiningAndQuarrying",
                "manufacturing" => "C_Manufacturing",
                "construction" => "F_Construction",
                "trade" => "G_WholesaleAndRetailTradeRepairOfMotorVehicles",
                "transport" => "H_TransportationAndStorage",
                "hospitality" => "I_AccommodationAndFoodServiceActivities",
                "domestic_work" => "T_ActivitiesOfHouseholdsAsEmployers",
                _ => "S_OtherServiceActivities",
            }
            .to_string()
        });
        row.put("vic_ForcedLabourIndustry", industry);
        let means = htcds_list(e.means_of_control.as_deref(), means_of_control);
        row.put("vic_MethodsOfControl", means);
        let relation = e.recruiter_relation.map(|rel| {
            match rel {
                "family" => "Familial",
                "friend" | "acquaintance" => "Acquainted",
                // Sic: the HTCDS value name is misspelt.
                "stranger" | "employer" => "Unaquainted",
                other => other,
            }
            .to_string()
        });
        row.put("vic_RelationshipToTrafficker", relation);
        row.put(
            "vic_AgeWhenTrafficked",
            e.age_at_exploitation.map(|a| a.to_string()),
        );
        let recruitment = e.country_of_recruitment.map(|c| self.country(c, r));
        row.put("country_of_recruitment", recruitment);
        let exploitation = e.country_of_exploitation.map(|c| self.country(c, r));
        row.put("country_of_exploitation", exploitation);
        row.put("referral_source", e.referral_source.map(str::to_string));
        row.put("shelter_offered", self.flag(e.shelter_offered, r));
        row.put("shelter_accepted", self.flag(e.shelter_accepted, r));
        let plans = htcds_list(e.assistance_types.as_deref(), assistance_type);
        row.put("spl_Type", plans);
        row.put("assisted_return", self.flag(e.assisted_return, r));
        row.put("return_type", e.return_type.map(str::to_string));
        row.put(
            "reintegration_outcome",
            e.reintegration_outcome.map(str::to_string),
        );
        let status = e.case_status.map(|s| {
            let open = s == "open";
            match (open, r.chance(0.8)) {
                (true, true) => "Active",
                (true, false) => "FollowUp",
                (false, true) => "Closed",
                (false, false) => "ClosedReferred",
            }
            .to_string()
        });
        row.put("cas_Status", status);
        self.put_legal_flags(&mut row, e, r);
        row.put("legal_outcome", e.legal_outcome.map(str::to_string));
        row
    }
}

/// Codes as HTCDS names them, `;`-separated, a value named twice in a row written once.
fn htcds_list(
    codes: Option<&[&'static str]>,
    name: fn(&'static str) -> &'static str,
) -> Option<String> {
    codes.map(|codes| {
        let mut names: Vec<&str> = codes.iter().map(|&c| name(c)).collect();
        names.dedup();
        join(&names)
    })
}

/// HTCDS `vic_TypeOfExploitation` values.
fn exploitation_type(code: &'static str) -> &'static str {
    match code {
        "forced_labour" => "ForcedLabour",
        "sexual_exploitation" => "SexualExploitation",
        "forced_marriage" => "ForcedMarriage",
        "forced_begging" => "ForcedBegging",
        _ => "Other",
    }
}

/// HTCDS `vic_MethodsOfControl` values.
fn means_of_control(code: &'static str) -> &'static str {
    match code {
        "debt_bondage" => "DebtBondage",
        "takes_earnings" => "TakesEarnings",
        "restricts_financial_access" => "RestrictsFinancialAccess",
        "threats" => "PhysicalThreats",
        "psychological_abuse" => "PsychologicalAbuse",
        "physical_abuse" => "PhysicalAbuse",
        "sexual_abuse" => "SexualAbuse",
        "false_promises" => "FalsePromises",
        "psychoactive_substances" => "PsychoactiveSubstance",
        "restricts_medical_care" => "RestrictsMedicalCare",
        "excessive_working_hours" => "ExcessiveWorkingHours",
        "uses_children" => "ThreatensChildrenFamily",
        "threat_of_law_enforcement" => "ThreatsLawEnforcement",
        "withholds_necessities" => "WithholdsNecessities",
        "withholds_documents" => "WithholdsDocuments",
        "other" => "Other",
        // Not in the HTCDS picklist: the canonical name is accepted too.
        other => other,
    }
}

/// HTCDS `spl_Type` values: several kinds of assistance share one plan type.
fn assistance_type(code: &'static str) -> &'static str {
    match code {
        "medical" => "Health",
        "psychosocial" => "SocialCare",
        "legal" => "Legal",
        "financial" => "Financial",
        "education" => "Education",
        "vocational_training" | "employment" => "Livelihood",
        other => other,
    }
}
