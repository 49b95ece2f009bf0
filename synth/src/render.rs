//! Episodes as rows of an NGO file: column names and value spellings of each import profile
//! (ingest's `canonical`, `htcds` and `ctdc`), the NGO's habits (script, date format, yes/no
//! words), and the injected faults.

use chrono::{Datelike, NaiveDate};
use ctstats_schemas::codes::{AgeBand, CodeList};
use ctstats_schemas::countries;

use crate::model::{Ctx, Document, Episode, Fault, Org, Person, Recorded};
use crate::names;
use crate::rng::{self, Rng};
use crate::{FileFormat, ProfileKind, TextEncoding};

/// One row: column names (the same, in the same order, for every row of a file) and cells.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub names: Vec<&'static str>,
    pub values: Vec<Option<String>>,
}

impl Row {
    fn put(&mut self, name: &'static str, value: Option<String>) {
        self.names.push(name);
        self.values.push(value);
    }

    fn set(&mut self, name: &str, value: Option<String>) {
        let at = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("fault column is in the row");
        self.values[at] = value;
    }
}

/// A rendered row and, when it carries a fault, the column and rule ingest will report.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub row: Row,
    pub fault: Option<(&'static str, &'static str)>,
}

/// Date spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateStyle {
    /// `14.03.1987`
    Dotted,
    /// `1987-03-14`
    Iso,
    /// `14/03/1987`
    Slashed,
}

fn format_date(d: NaiveDate, style: DateStyle) -> String {
    let (y, m, day) = (d.year(), d.month(), d.day());
    format_ymd(y, m, day, style)
}

fn format_ymd(y: i32, m: u32, d: u32, style: DateStyle) -> String {
    match style {
        DateStyle::Dotted => format!("{d:02}.{m:02}.{y:04}"),
        DateStyle::Iso => format!("{y:04}-{m:02}-{d:02}"),
        DateStyle::Slashed => format!("{d:02}/{m:02}/{y:04}"),
    }
}

/// Russian country names that ingest's canonical profile maps.
fn russian_name(alpha3: &str) -> Option<&'static str> {
    Some(match alpha3 {
        "KGZ" => "Кыргызстан",
        "KAZ" => "Казахстан",
        "TJK" => "Таджикистан",
        "UZB" => "Узбекистан",
        "TKM" => "Туркменистан",
        "MDA" => "Молдова",
        "UKR" => "Украина",
        "RUS" => "Россия",
        "BLR" => "Беларусь",
        "TUR" => "Турция",
        "ARE" => "ОАЭ",
        "DEU" => "Германия",
        "POL" => "Польша",
        "CHN" => "Китай",
        "KOR" => "Южная Корея",
        "ISR" => "Израиль",
        "GEO" => "Грузия",
        "ARM" => "Армения",
        "AZE" => "Азербайджан",
        "AFG" => "Афганистан",
        _ => return None,
    })
}

fn alpha2(alpha3: &str) -> &'static str {
    countries::by_alpha3(alpha3).map_or("ZZ", |c| c.alpha2)
}

fn dialling_code(mission: &str) -> &'static str {
    match mission {
        "KGZ" => "+996",
        "KAZ" => "+7",
        "TJK" => "+992",
        "UZB" => "+998",
        "MDA" => "+373",
        "UKR" => "+380",
        _ => "+",
    }
}

const NOTES_RU: &[&str] = &[
    "Повторное обращение",
    "Направлена из посольства",
    "Нуждается в медицинской помощи",
    "Документы изъяты работодателем",
    "Связь через сестру, звонить вечером",
    "Просит не сообщать родственникам",
    "Ожидает возвращения домой",
    "Консультация юриста 2 раза",
];
const NOTES_EN: &[&str] = &[
    "Referred by the embassy",
    "Needs medical follow-up",
    "Documents held by employer",
    "Contact via sister, call after 6pm",
    "Asked us not to tell the family",
    "Awaiting return home",
    "Second visit; see the earlier file",
    "Said the \"agency\" kept her passport",
];

/// A document number typed in Cyrillic look-alike letters that ingest romanises back.
fn cyrillic_document(latin: &str) -> String {
    latin
        .chars()
        .map(|c| match c {
            'A' => 'А',
            'B' => 'Б',
            'D' => 'Д',
            'E' => 'Е',
            'I' => 'И',
            'K' => 'К',
            'M' => 'М',
            'N' => 'Н',
            'O' => 'О',
            'P' => 'П',
            'T' => 'Т',
            other => other,
        })
        .collect()
}

fn join(codes: &[&str]) -> String {
    codes.join(";")
}

/// Renders the rows of one organisation's file.
#[derive(Debug)]
pub(crate) struct Renderer<'a> {
    ctx: &'a Ctx<'a>,
    org: &'a Org,
    windows1251: bool,
    jsonl: bool,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(ctx: &'a Ctx<'a>, org: &'a Org) -> Renderer<'a> {
        Renderer {
            ctx,
            org,
            windows1251: org.format == FileFormat::Csv
                && ctx.config.encoding == TextEncoding::Windows1251,
            jsonl: org.format == FileFormat::Jsonl,
        }
    }

    /// Episode `j` of `person`, as row `seq` (from 1) of the file.
    pub(crate) fn render(&self, person: &Person, j: usize, seq: u64) -> Rendered {
        let e = &person.episodes[j];
        let mut r = Rng::new(
            self.ctx.seed(),
            u64::from(person.index),
            j as u64 + 1,
            rng::RENDER,
        );
        let mut row = match self.ctx.profile() {
            ProfileKind::Canonical => self.canonical(person, e, seq, &mut r),
            ProfileKind::Htcds => self.htcds(person, e, seq, &mut r),
            ProfileKind::Ctdc => self.ctdc(person, e, &mut r),
        };
        let fault = e.fault.map(|fault| {
            let column = self.inject(&mut row, fault, person, e, &mut r);
            (column, fault.rule())
        });
        Rendered { row, fault }
    }

    /// A header name in the NGO's language.
    fn h(&self, russian: &'static str, english: &'static str) -> &'static str {
        if self.org.cyrillic { russian } else { english }
    }

    fn default_date_style(&self) -> DateStyle {
        match self.ctx.profile() {
            ProfileKind::Canonical if self.org.cyrillic => DateStyle::Dotted,
            _ => DateStyle::Iso,
        }
    }

    fn date_style(&self, r: &mut Rng) -> DateStyle {
        if self.ctx.profile() == ProfileKind::Canonical && r.chance(0.05) {
            DateStyle::Slashed
        } else {
            self.default_date_style()
        }
    }

    /// "Not recorded": an empty cell, or in Russian-language registers sometimes `н/д`.
    fn missing(&self, r: &mut Rng) -> Option<String> {
        (self.org.cyrillic && self.ctx.profile() == ProfileKind::Canonical && r.chance(0.1))
            .then(|| "н/д".to_string())
    }

    fn or_missing(&self, value: Option<String>, r: &mut Rng) -> Option<String> {
        match value {
            Some(v) => Some(v),
            None => self.missing(r),
        }
    }

    fn names(&self, p: &Person, e: &Episode, r: &mut Rng) -> (String, String) {
        let given = names::given(p.female)[usize::from(p.given)];
        let family = names::family()[usize::from(p.family)];
        let (g, f) = match (e.cyrillic, p.female) {
            (true, true) => (given.0, family.2),
            (true, false) => (given.0, family.0),
            (false, true) => (given.1, family.3),
            (false, false) => (given.1, family.1),
        };
        let (mut g, mut f) = if self.windows1251 {
            (names::russianise(g), names::russianise(f))
        } else {
            (g.to_string(), f.to_string())
        };
        if r.chance(0.03) {
            f = f.to_uppercase();
        }
        if r.chance(0.01) {
            g = format!(" {g}");
        }
        (g, f)
    }

    fn document(&self, d: &Document, e: &Episode, r: &mut Rng) -> String {
        let latin = d.latin();
        let text = if e.cyrillic && r.chance(0.3) {
            cyrillic_document(&latin)
        } else {
            latin
        };
        match r.below(10) {
            0 => {
                let split = text
                    .char_indices()
                    .find(|(_, c)| c.is_ascii_digit())
                    .map_or(0, |(i, _)| i);
                format!("{} {}", &text[..split], &text[split..])
            }
            1 => text.to_lowercase(),
            _ => text,
        }
    }

    fn country(&self, alpha3: &'static str, r: &mut Rng) -> String {
        match self.ctx.profile() {
            ProfileKind::Canonical if self.org.cyrillic => match russian_name(alpha3) {
                Some(name) if r.chance(0.7) => name.to_string(),
                _ => alpha3.to_string(),
            },
            ProfileKind::Htcds if r.chance(0.7) => alpha2(alpha3).to_string(),
            ProfileKind::Ctdc => alpha2(alpha3).to_string(),
            _ if r.chance(0.5) => alpha2(alpha3).to_string(),
            _ => alpha3.to_string(),
        }
    }

    fn flag(&self, value: Option<bool>, r: &mut Rng) -> Option<String> {
        let Some(v) = value else {
            return self.missing(r);
        };
        let text = match self.ctx.profile() {
            ProfileKind::Htcds => {
                if v {
                    "true"
                } else {
                    "false"
                }
            }
            _ if r.chance(0.1) => {
                if v {
                    "1"
                } else {
                    "0"
                }
            }
            _ if self.org.cyrillic => {
                if v {
                    "да"
                } else {
                    "нет"
                }
            }
            _ => {
                if v {
                    "yes"
                } else {
                    "no"
                }
            }
        };
        Some(text.to_string())
    }

    fn phone(&self, r: &mut Rng) -> Option<String> {
        r.recorded(0.3, |r| {
            format!(
                "{} {} {}",
                dialling_code(self.org.mission),
                r.range(100, 999),
                r.range(100_000, 999_999)
            )
        })
    }

    fn canonical(&self, p: &Person, e: &Episode, seq: u64, r: &mut Rng) -> Row {
        let mut row = Row::default();
        let style = self.date_style(r);
        let date = |d: NaiveDate| format_date(d, style);
        row.put(
            "case_id",
            Some(format!("{}{}-{seq:05}", self.org.mission, self.org.number)),
        );
        let (given, family) = self.names(p, e, r);
        row.put(self.h("Фамилия", "last_name"), Some(family));
        row.put(self.h("Имя", "first_name"), Some(given));
        row.put(
            self.h("Дата рождения", "birth_date"),
            e.age_recorded.then(|| date(p.birth)),
        );
        let document = p.document.as_ref().map(|d| self.document(d, e, r));
        row.put(self.h("Номер паспорта", "document_number"), document);
        row.put("registration_date", Some(date(e.registration)));
        let identification = e.identification.map(date);
        row.put("identification_date", self.or_missing(identification, r));
        let closed = e.closed.map(date);
        row.put("case_closed_date", self.or_missing(closed, r));
        let gender = e.gender_recorded.then(|| {
            let choices: &[&str] = match (self.org.cyrillic, p.female) {
                (true, true) => &["ж", "ж", "жен", "Ж"],
                (true, false) => &["м", "м", "муж", "М"],
                (false, true) => &["female", "female", "F", "Female"],
                (false, false) => &["male", "male", "M", "Male"],
            };
            r.pick(choices).to_string()
        });
        row.put(self.h("Пол", "gender"), self.or_missing(gender, r));
        let citizenship =
            (e.citizenship == Recorded::Known).then(|| self.country(p.citizenship, r));
        row.put(
            self.h("Гражданство", "citizenship"),
            self.or_missing(citizenship, r),
        );
        let recruitment = e.country_of_recruitment.map(|c| self.country(c, r));
        row.put("country_of_recruitment", self.or_missing(recruitment, r));
        let exploitation = e.country_of_exploitation.map(|c| self.country(c, r));
        row.put("country_of_exploitation", self.or_missing(exploitation, r));
        let code = |v: Option<&'static str>| v.map(str::to_string);
        let list = |v: &Option<Vec<&'static str>>| v.as_deref().map(join);
        let cells: [(&'static str, Option<String>); 6] = [
            ("trafficking_status", code(e.trafficking_status)),
            ("exploitation_types", list(&e.exploitation_types)),
            ("labour_sectors", list(&e.labour_sectors)),
            ("means_of_control", list(&e.means_of_control)),
            ("recruiter_relation", code(e.recruiter_relation)),
            ("referral_source", code(e.referral_source)),
        ];
        for (name, value) in cells {
            row.put(name, self.or_missing(value, r));
        }
        row.put("shelter_offered", self.flag(e.shelter_offered, r));
        row.put("shelter_accepted", self.flag(e.shelter_accepted, r));
        row.put(
            "assistance_types",
            self.or_missing(list(&e.assistance_types), r),
        );
        row.put("assisted_return", self.flag(e.assisted_return, r));
        row.put("return_type", self.or_missing(code(e.return_type), r));
        row.put(
            "reintegration_outcome",
            self.or_missing(code(e.reintegration_outcome), r),
        );
        row.put("case_status", self.or_missing(code(e.case_status), r));
        row.put(
            "reported_to_law_enforcement",
            self.flag(e.reported_to_law_enforcement, r),
        );
        row.put(
            "cooperated_with_investigation",
            self.flag(e.cooperated_with_investigation, r),
        );
        row.put(
            "participated_in_trial",
            self.flag(e.participated_in_trial, r),
        );
        row.put("legal_outcome", self.or_missing(code(e.legal_outcome), r));
        row.put("Телефон", self.phone(r));
        let notes = if self.org.cyrillic {
            NOTES_RU
        } else {
            NOTES_EN
        };
        row.put("notes", r.recorded(0.6, |r| r.pick(notes).to_string()));
        row
    }

    fn htcds(&self, p: &Person, e: &Episode, seq: u64, r: &mut Rng) -> Row {
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
        let types = e.exploitation_types.as_ref().map(|t| {
            let names: Vec<&str> = t
                .iter()
                .map(|t| match *t {
                    "forced_labour" => "ForcedLabour",
                    "sexual_exploitation" => "SexualExploitation",
                    "forced_marriage" => "ForcedMarriage",
                    "forced_begging" => "ForcedBegging",
                    _ => "Other",
                })
                .collect();
            join(&names)
        });
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
        let means = e.means_of_control.as_ref().map(|m| {
            let names: Vec<&str> = m
                .iter()
                .map(|m| match *m {
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
                })
                .collect();
            join(&names)
        });
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
        let plans = e.assistance_types.as_ref().map(|a| {
            let mut names: Vec<&str> = a
                .iter()
                .map(|a| match *a {
                    "medical" => "Health",
                    "psychosocial" => "SocialCare",
                    "legal" => "Legal",
                    "financial" => "Financial",
                    "education" => "Education",
                    "vocational_training" | "employment" => "Livelihood",
                    other => other,
                })
                .collect();
            names.dedup();
            join(&names)
        });
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
        row.put(
            "reported_to_law_enforcement",
            self.flag(e.reported_to_law_enforcement, r),
        );
        row.put(
            "cooperated_with_investigation",
            self.flag(e.cooperated_with_investigation, r),
        );
        row.put(
            "participated_in_trial",
            self.flag(e.participated_in_trial, r),
        );
        row.put("legal_outcome", e.legal_outcome.map(str::to_string));
        row
    }

    /// A CTDC 0/1/-99 flag; exports through pandas write `1.0`, `0.0`, `-99.0`.
    fn ctdc_flag(&self, value: Option<bool>) -> Option<String> {
        let float = self.org.number.is_multiple_of(2);
        let text = match (value, float) {
            (Some(true), false) => "1",
            (Some(false), false) => "0",
            (None, false) => "-99",
            (Some(true), true) => "1.0",
            (Some(false), true) => "0.0",
            (None, true) => "-99.0",
        };
        Some(text.to_string())
    }

    /// Flag columns, one per (column, code), set when `codes` holds the code; all `-99` when
    /// `codes` is not recorded. Returns the labels of the set flags, sorted, when recorded.
    fn ctdc_flags(
        &self,
        row: &mut Row,
        columns: &[(&'static str, &'static str, &'static str)],
        codes: Option<&[&str]>,
    ) -> Option<Vec<&'static str>> {
        let mut labels = Vec::new();
        for (column, code, label) in columns {
            let set = codes.map(|c| c.contains(code));
            if set == Some(true) {
                labels.push(*label);
            }
            row.put(column, self.ctdc_flag(set));
        }
        labels.sort_unstable();
        labels.dedup();
        codes.map(|_| labels)
    }

    fn ctdc(&self, p: &Person, e: &Episode, r: &mut Rng) -> Row {
        let mut row = Row::default();
        let text = |s: &str| Some(s.to_string());
        let missing = || text("-99");
        row.put(
            "yearOfRegistration",
            Some(e.registration.year().to_string()),
        );
        let source = if e.hotline {
            "Hotline"
        } else {
            "Case management"
        };
        row.put("datasource", text(source));
        let gender = match (e.gender_recorded, p.female) {
            (true, true) => text("Female"),
            (true, false) => text("Male"),
            (false, _) if r.chance(0.3) => text("Unknown"),
            (false, _) => missing(),
        };
        row.put("gender", gender);
        let majority = |age: u32| text(if age < 18 { "Minor" } else { "Adult" });
        let (band, status) = if e.age_recorded {
            let band = AgeBand::of_age(e.age).name().replace('-', "--");
            (Some(band), majority(e.age))
        } else {
            (missing(), missing())
        };
        row.put("ageBroad", band);
        row.put("majorityStatus", status.clone());
        row.put(
            "majorityStatusAtExploit",
            e.age_at_exploitation.map_or_else(missing, majority),
        );
        row.put("majorityEntry", status);
        let citizenship = match e.citizenship {
            Recorded::Known => text(alpha2(p.citizenship)),
            Recorded::Unknown => text(if r.chance(0.5) { "ZZ" } else { "00" }),
            Recorded::Missing => missing(),
        };
        row.put("citizenship", citizenship);
        let concatenated = |labels: Option<Vec<&str>>| match labels {
            Some(l) if l.is_empty() => text("Not Specified"),
            Some(l) => Some(l.join(";")),
            None => text("Not Specified"),
        };
        let means = self.ctdc_flags(
            &mut row,
            &[
                ("meansOfControlDebtBondage", "debt_bondage", "Debt bondage"),
                (
                    "meansOfControlTakesEarnings",
                    "takes_earnings",
                    "Takes/Withholds Earnings",
                ),
                (
                    "meansOfControlRestrictsFinancialAccess",
                    "restricts_financial_access",
                    "Restricts access to finances",
                ),
                (
                    "meansOfControlThreats",
                    "threats",
                    "Threats to individual or others",
                ),
                (
                    "meansOfControlPsychologicalAbuse",
                    "psychological_abuse",
                    "Psychological abuse",
                ),
                (
                    "meansOfControlPhysicalAbuse",
                    "physical_abuse",
                    "Physical abuse",
                ),
                ("meansOfControlSexualAbuse", "sexual_abuse", "Sexual abuse"),
                (
                    "meansOfControlFalsePromises",
                    "false_promises",
                    "False promises/deception",
                ),
                (
                    "meansOfControlPsychoactiveSubstances",
                    "psychoactive_substances",
                    "Use of psychoactive substances",
                ),
                (
                    "meansOfControlRestrictsMovement",
                    "restricts_movement",
                    "Denied freedom of movement/kept in isolation",
                ),
                (
                    "meansOfControlRestrictsMedicalCare",
                    "restricts_medical_care",
                    "Limits/restricts medical services",
                ),
                (
                    "meansOfControlExcessiveWorkingHours",
                    "excessive_working_hours",
                    "Excessive working hours",
                ),
                (
                    "meansOfControlUsesChildren",
                    "uses_children",
                    "Restricts access to/manipulates children",
                ),
                (
                    "meansOfControlThreatOfLawEnforcement",
                    "threat_of_law_enforcement",
                    "Threat of action by law enforcement",
                ),
                (
                    "meansOfControlWithholdsNecessities",
                    "withholds_necessities",
                    "Withholds/denies basic necessities",
                ),
                (
                    "meansOfControlWithholdsDocuments",
                    "withholds_documents",
                    "Withholds/Destroys Important Documents",
                ),
                ("meansOfControlOther", "other", "Other"),
            ],
            e.means_of_control.as_deref(),
        );
        row.put(
            "meansOfControlNotSpecified",
            self.ctdc_flag(Some(means.is_none())),
        );
        row.put("meansOfControlConcatenated", concatenated(means));

        let types = e.exploitation_types.as_deref();
        let has = |code: &str| types.map(|t| t.contains(&code));
        let labels = self.ctdc_flags(
            &mut row,
            &[
                (
                    "isForcedLabour",
                    "forced_labour",
                    "Forced labour and/or services",
                ),
                (
                    "isSexualExploit",
                    "sexual_exploitation",
                    "Sexual exploitation",
                ),
                ("isOtherExploit", "other", "Other"),
            ],
            types,
        );
        let both = has("forced_labour")
            .zip(has("sexual_exploitation"))
            .map(|(a, b)| a && b);
        row.put("isSexAndLabour", self.ctdc_flag(both));
        row.put("isForcedMarriage", self.ctdc_flag(has("forced_marriage")));
        row.put("isForcedMilitary", self.ctdc_flag(types.map(|_| false)));
        row.put("isOrganRemoval", self.ctdc_flag(types.map(|_| false)));
        // Forced marriage is labelled `Other` in the concatenation.
        let labels = labels.map(|mut l| {
            if has("forced_marriage") == Some(true) && !l.contains(&"Other") {
                l.push("Other");
                l.sort_unstable();
            }
            l.join(";")
        });
        row.put("typeOfExploitConcatenated", labels.or_else(missing));

        let labour = types.is_some_and(|t| {
            t.iter().any(|t| {
                matches!(
                    *t,
                    "forced_labour" | "forced_begging" | "forced_criminality"
                )
            })
        });
        let sectors: Option<Vec<&str>> = labour.then(|| {
            let mut s: Vec<&str> = e.labour_sectors.clone().unwrap_or_default();
            if has("forced_begging") == Some(true) {
                s.push("begging");
            }
            if has("forced_criminality") == Some(true) {
                s.push("illicit_activities");
            }
            s
        });
        let labour_columns: &[(&str, &str, &str)] = &[
            (
                "typeOfLabourAgriculture",
                "agriculture",
                "Agriculture/Farms/Animal Husbandry",
            ),
            ("typeOfLabourAquafarming", "fishing", "Aquafarming/Fishing"),
            ("typeOfLabourBegging", "begging", "Begging"),
            ("typeOfLabourConstruction", "construction", "Construction"),
            ("typeOfLabourDomesticWork", "domestic_work", "Domestic Work"),
            (
                "typeOfLabourHospitality",
                "hospitality",
                "Hospitality/Restaurant/Food Service/Hotel",
            ),
            (
                "typeOfLabourIllicitActivities",
                "illicit_activities",
                "Illicit Activities",
            ),
            (
                "typeOfLabourManufacturing",
                "manufacturing",
                "Manufacturing/Factory work",
            ),
            (
                "typeOfLabourMiningOrDrilling",
                "mining",
                "Mining, Quarrying, Oil/Gas Extraction",
            ),
            (
                "typeOfLabourPeddling",
                "peddling",
                "Peddling/informal street commerce",
            ),
            ("typeOfLabourTransportation", "transport", "Transportation"),
            ("typeOfLabourOther", "trade", "Other"),
        ];
        let labour_labels = self.ctdc_flags(&mut row, labour_columns, sectors.as_deref());
        let unspecified = sectors.as_ref().map(|s| s.is_empty());
        row.put("typeOfLabourNotSpecified", self.ctdc_flag(unspecified));
        let labour_labels = match labour_labels {
            Some(l) if l.is_empty() => text("Not Specified"),
            Some(l) => Some(l.join(";")),
            None => missing(),
        };
        row.put("typeOfLabourConcatenated", labour_labels);

        let sexual = has("sexual_exploitation") == Some(true);
        let sex_type = sexual
            .then(|| r.weighted(&[("prostitution", 85), ("pornography", 10), ("private", 5)]));
        let sex_types = sex_type.map(|t| vec![t]);
        let sex_labels = self.ctdc_flags(
            &mut row,
            &[
                ("typeOfSexProstitution", "prostitution", "Prostitution"),
                ("typeOfSexPornography", "pornography", "Pornography"),
                (
                    "typeOfSexRemoteInteractiveServices",
                    "remote",
                    "Remote interactive services",
                ),
                (
                    "typeOfSexPrivateSexualServices",
                    "private",
                    "Private sexual services",
                ),
            ],
            sex_types.as_deref(),
        );
        row.put(
            "typeOfSexConcatenated",
            sex_labels.map_or_else(missing, |l| Some(l.join(";"))),
        );
        row.put("isAbduction", self.ctdc_flag(e.abduction));
        let relation = e.recruiter_relation.map(|rel| match rel {
            "intimate_partner" => ("intimate_partner", "Intimate Partner"),
            "friend" | "acquaintance" => ("friend", "Friend/Acquaintance"),
            "family" => ("family", "Family/Relative"),
            _ => ("other", "Other"),
        });
        row.put(
            "RecruiterRelationship",
            relation.map_or_else(missing, |(_, label)| text(label)),
        );
        let exploitation = match e.country_of_exploitation {
            Some(c) => text(alpha2(c)),
            None if r.chance(0.2) => text("ZZ"),
            None => missing(),
        };
        row.put("CountryofExploitation", exploitation);
        let code = relation.map(|(code, _)| code);
        for (column, c) in [
            ("recruiterRelationIntimatePartner", "intimate_partner"),
            ("recruiterRelationFriend", "friend"),
            ("recruiterRelationFamily", "family"),
            ("recruiterRelationOther", "other"),
        ] {
            row.put(column, self.ctdc_flag(code.map(|x| x == c)));
        }
        row.put(
            "recruiterRelationUnknown",
            self.ctdc_flag(Some(code.is_none())),
        );
        row
    }

    /// Replace one cell with the fault; returns the column as the file's header names it.
    fn inject(
        &self,
        row: &mut Row,
        fault: Fault,
        p: &Person,
        e: &Episode,
        r: &mut Rng,
    ) -> &'static str {
        let profile = self.ctx.profile();
        let registration = match profile {
            ProfileKind::Htcds => "cas_IncomingReferralDate",
            _ => "registration_date",
        };
        let gender = match profile {
            ProfileKind::Canonical => self.h("Пол", "gender"),
            ProfileKind::Htcds => "prs_Gender",
            ProfileKind::Ctdc => "gender",
        };
        let style = self.default_date_style();
        let year = e.registration.year();
        let (column, value) = match fault {
            Fault::ImpossibleDate => {
                let (d, m) = *r.pick(&[(31, 2), (30, 2), (31, 4), (31, 6), (31, 9), (31, 11)]);
                (registration, Some(format_ymd(year, m, d, style)))
            }
            Fault::FutureDate => {
                let (m, d) = (e.registration.month(), e.registration.day().min(28));
                (registration, Some(format_ymd(2099, m, d, style)))
            }
            Fault::UnknownGender => {
                let choices: &[&str] = match profile {
                    ProfileKind::Canonical => &["X", "Ж/М", "other", "жен."],
                    ProfileKind::Htcds => &["X", "NotSpecified", "Fem"],
                    ProfileKind::Ctdc => &["X", "F", "M"],
                };
                (gender, Some(r.pick(choices).to_string()))
            }
            Fault::StrayEncoding => {
                // UTF-8 `ж`/`м` read as Windows-1252 (or, in a Windows-1251 file, as 1251).
                let text = match (self.windows1251, p.female) {
                    (false, true) => "Ð¶",
                    (false, false) => "Ð¼",
                    (true, true) => "Р¶",
                    (true, false) => "Рј",
                };
                (gender, Some(text.to_string()))
            }
            Fault::MissingCaseId => {
                let column = match profile {
                    ProfileKind::Htcds => "cas_CaseNumber",
                    _ => "case_id",
                };
                // JSON Lines writes the key with an empty value, so the column is known.
                (column, self.jsonl.then(String::new))
            }
            Fault::UnknownCountry => {
                let column = match profile {
                    ProfileKind::Ctdc => "CountryofExploitation",
                    _ => "country_of_exploitation",
                };
                (column, Some("QQ".to_string()))
            }
            Fault::BadFlag => {
                let column = match profile {
                    ProfileKind::Ctdc => "isAbduction",
                    _ => "shelter_offered",
                };
                (column, Some("maybe".to_string()))
            }
        };
        row.set(column, value);
        column
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctstats_ingest::identity::normalise_document;

    #[test]
    fn cyrillic_documents_link_to_latin_ones() {
        for prefix in [
            "AN", "ID", "N", "AA", "AB", "A", "B", "EK", "KM", "MT", "P", "75",
        ] {
            let latin = format!("{prefix}1234567");
            let cyrillic = cyrillic_document(&latin);
            assert_eq!(
                normalise_document(&cyrillic),
                normalise_document(&latin),
                "{cyrillic}"
            );
        }
    }

    #[test]
    fn russian_country_names_are_in_the_canonical_profile() {
        let profile = ctstats_ingest::profile::canonical();
        let map = &profile.values["citizenship"];
        for c in [
            "KGZ", "KAZ", "TJK", "UZB", "TKM", "MDA", "UKR", "RUS", "BLR", "TUR", "ARE", "DEU",
            "POL", "CHN", "KOR", "ISR", "GEO", "ARM", "AZE", "AFG",
        ] {
            let name = russian_name(c).unwrap();
            let key = ctstats_ingest::profile::normalise_token(name);
            assert_eq!(map.get(&key).map(String::as_str), Some(c), "{name}");
        }
    }
}
