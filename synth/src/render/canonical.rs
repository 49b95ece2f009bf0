//! The columns of ctstats' own template (ingest's `canonical` profile).

use chrono::NaiveDate;

use super::spelling::{format_date, join};
use super::{Renderer, Row};
use crate::model::{Episode, Person, Recorded};
use crate::rng::Rng;

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

impl Renderer<'_> {
    pub(super) fn canonical(&self, p: &Person, e: &Episode, seq: u64, r: &mut Rng) -> Row {
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
        self.put_legal_flags(&mut row, e, r);
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
}
