//! Months and periods of registration.

use super::*;

/// A month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// Parse `YYYY-MM` (years 1900 to 2100).
    pub fn parse(text: &str) -> Option<Month> {
        let (y, m) = text.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        ((1900..=2100).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// `year * 12 + month - 1`: consecutive months have consecutive indices.
    pub(crate) fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    fn from_index(index: i64) -> Month {
        Month {
            year: index.div_euclid(12) as i32,
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// The next month.
    pub fn next(self) -> Month {
        Month::from_index(self.index() + 1)
    }

    /// The first day of the month, `YYYY-MM-01`.
    pub fn first_day(self) -> String {
        format!("{:04}-{:02}-01", self.year, self.month)
    }

    /// The quarter key, `YYYY-Qn`.
    pub fn quarter(self) -> String {
        format!("{:04}-Q{}", self.year, (self.month - 1) / 3 + 1)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Registration months included, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub from: Month,
    pub to: Month,
}

impl Period {
    /// Every month of the period, in order.
    pub fn months(self) -> impl Iterator<Item = Month> {
        (self.from.index()..=self.to.index()).map(Month::from_index)
    }
}
