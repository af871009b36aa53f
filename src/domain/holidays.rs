//! National public holidays, used to decide working days for deadlines.
//!
//! "National" here means a day that is a public (non-working) holiday in the
//! whole country by national law: regional holidays (German Länder, Spanish
//! autonomous communities, Swiss cantons, US states, Alsace-Moselle, ...) are
//! out of scope, because a deadline must not depend on where inside a country
//! the controller happens to sit. Where national law has a dedicated list of
//! days that stop statutory time limits (the Dutch Algemene termijnenwet, the
//! Swedish and Finnish time-limit acts), that list is used.
//!
//! Holidays that always fall on a weekend (Easter Sunday, Whit Sunday, the
//! Swedish Midsummer Day, ...) are omitted: weekends are non-working anyway.
//! Ad-hoc days granted by decree (bridge days, the Dutch "gelijkgestelde
//! dagen") are also omitted unless listed below as one-offs.
//!
//! When unsure whether a day is a national holiday, the table leaves it out:
//! a missing holiday can only make a deadline earlier, never later, so the
//! error is on the safe side for the controller.
//!
//! Covered: the 27 EU member states, IS, LI, NO, GB (England
//! and Wales bank holidays), CH, BR and US (federal holidays). Every other
//! country has no holidays here; its weekends still count as non-working.
//!
//! Rules carry the years they applied in where a change is known; otherwise
//! they apply to every year.
//!
//! Holidays change by law, often with a year's notice or less, and a rule
//! table cannot know it. So the tables are compared with an independent
//! dataset (`tests/fixtures/holidays_reference.csv`, made by
//! `tools/holidays/generate.py`) for every year up to [`VERIFIED_THROUGH`];
//! past that year the rules are an extrapolation, which [`verified`] lets
//! callers notice.

use jiff::Span;
use jiff::civil::{Date, Weekday};

use super::jurisdiction::Country;

/// The last year whose holidays were checked, for every covered country,
/// against the independent reference table: the test
/// `rules_match_the_reference_table` compares every weekday from 2020 to
/// this year. A date after it is computed by rules nobody has checked for
/// that year (a holiday added or moved by a later law would be missed).
///
/// Moving it is a review, not an edit: regenerate the reference with
/// `tools/holidays/generate.py` for the new range, run the test, and fix
/// the rules or the reviewed list of known differences.
pub const VERIFIED_THROUGH: i16 = 2030;

/// Whether the holidays of `date`'s year were checked against the
/// reference (see [`VERIFIED_THROUGH`]). Years before the reference begins
/// count as verified: they lie in the past, where the rules were written
/// against the law as it stood.
pub fn verified(date: Date) -> bool {
    date.year() <= VERIFIED_THROUGH
}

/// Whether there are holiday rules for `country` (see the module's list of
/// covered countries); elsewhere only weekends are non-working.
pub fn covers(country: Country) -> bool {
    !rules_for(country).is_empty()
}

/// Whether `date` is a national public holiday (or the substitute day for
/// one) in `country`.
pub fn is_public_holiday(country: Country, date: Date) -> bool {
    public_holiday(country, date).is_some()
}

/// The English name of the national public holiday on `date` in `country`,
/// if any. A substitute day carries the name of the holiday it replaces, and
/// the weekend day it replaces still reports the holiday too.
pub fn public_holiday(country: Country, date: Date) -> Option<&'static str> {
    let rules = rules_for(country);
    if rules.is_empty() {
        return None;
    }
    let year = date.year();
    if let Some(name) = YearList::build(rules, year).find(date) {
        return Some(name);
    }
    // A substitute can cross a year boundary: the US observes a Saturday
    // 1 January on Friday 31 December of the year before.
    let neighbour = match date.month() {
        12 => year.checked_add(1),
        1 => year.checked_sub(1),
        _ => None,
    };
    neighbour.and_then(|year| YearList::build(rules, year).find(date))
}

/// Gregorian (Western) Easter Sunday of `year`, by the anonymous Gregorian
/// algorithm as given by Meeus.
///
/// `None` only where the date is not representable (outside jiff's range);
/// the result is meaningful from 1583, when the Gregorian calendar began.
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let n = h + l - 7 * m + 114;
    date_of(year, n.div_euclid(31), n.rem_euclid(31) + 1)
}

/// Orthodox Easter Sunday of `year` as a Gregorian date: Meeus's Julian
/// algorithm, then shifted by the Julian–Gregorian gap of that century
/// (13 days in 1900–2099). Needed for BG, CY, GR and RO.
pub fn orthodox_easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y.rem_euclid(4);
    let b = y.rem_euclid(7);
    let c = y.rem_euclid(19);
    let d = (19 * c + 15).rem_euclid(30);
    let e = (2 * a + 4 * b - d + 34).rem_euclid(7);
    let n = d + e + 114;
    let julian = date_of(year, n.div_euclid(31), n.rem_euclid(31) + 1)?;
    // Julian Easter falls between 22 March and 25 April, after the leap day
    // in which the gap grows, so the century formula applies as is.
    let gap = y.div_euclid(100) - y.div_euclid(400) - 2;
    julian.checked_add(Span::new().days(gap)).ok()
}

fn date_of(year: i16, month: i32, day: i32) -> Option<Date> {
    Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

/// How a holiday's date is found in a given year.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Fixed {
        month: i8,
        day: i8,
    },
    /// Days after Western Easter Sunday (negative: before).
    Easter(i16),
    /// Days after Orthodox Easter Sunday.
    OrthodoxEaster(i16),
    /// The `nth` `weekday` of `month`; negative counts from the month's end.
    Nth {
        nth: i8,
        weekday: Weekday,
        month: i8,
    },
    /// The first `weekday` on or after `month`/`day`.
    OnOrAfter {
        weekday: Weekday,
        month: i8,
        day: i8,
    },
    /// Irish St Brigid's Day: the first Monday of February, except that
    /// 1 February itself is the holiday when it falls on a Friday.
    StBrigid,
}

impl Rule {
    fn date_in(self, year: i16, western: Option<Date>, orthodox: Option<Date>) -> Option<Date> {
        match self {
            Rule::Fixed { month, day } => Date::new(year, month, day).ok(),
            Rule::Easter(offset) => western?.checked_add(Span::new().days(offset)).ok(),
            Rule::OrthodoxEaster(offset) => orthodox?.checked_add(Span::new().days(offset)).ok(),
            Rule::Nth {
                nth,
                weekday,
                month,
            } => Date::new(year, month, 1)
                .and_then(|first| first.nth_weekday_of_month(nth, weekday))
                .ok(),
            Rule::OnOrAfter {
                weekday,
                month,
                day,
            } => {
                let start = Date::new(year, month, day).ok()?;
                if start.weekday() == weekday {
                    Some(start)
                } else {
                    start.nth_weekday(1, weekday).ok()
                }
            }
            Rule::StBrigid => {
                let first = Date::new(year, 2, 1).ok()?;
                if first.weekday() == Weekday::Friday {
                    Some(first)
                } else {
                    first.nth_weekday_of_month(1, Weekday::Monday).ok()
                }
            }
        }
    }
}

/// What happens when a holiday falls on a weekend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shift {
    /// Nothing: the holiday is simply lost to the weekend.
    None,
    /// The next weekday that is not already a holiday becomes a substitute
    /// (UK bank holidays, Bulgaria, the Latvian independence days).
    NextFreeWeekday,
    /// US federal practice (5 U.S.C. 6103(b)): Saturday → the Friday
    /// before, Sunday → the Monday after.
    UsFederal,
}

/// One row of a country's table.
#[derive(Debug, Clone, Copy)]
struct Holiday {
    name: &'static str,
    rule: Rule,
    first_year: i16,
    last_year: i16,
    /// Inclusive range of years in which the holiday was suspended.
    suspended: Option<(i16, i16)>,
    shift: Shift,
}

impl Holiday {
    const fn new(name: &'static str, rule: Rule) -> Self {
        Self {
            name,
            rule,
            first_year: i16::MIN,
            last_year: i16::MAX,
            suspended: None,
            shift: Shift::None,
        }
    }

    const fn from(mut self, year: i16) -> Self {
        self.first_year = year;
        self
    }

    const fn until(mut self, year: i16) -> Self {
        self.last_year = year;
        self
    }

    const fn only(self, year: i16) -> Self {
        self.from(year).until(year)
    }

    const fn suspended(mut self, first: i16, last: i16) -> Self {
        self.suspended = Some((first, last));
        self
    }

    const fn substituted(mut self) -> Self {
        self.shift = Shift::NextFreeWeekday;
        self
    }

    const fn us_observed(mut self) -> Self {
        self.shift = Shift::UsFederal;
        self
    }

    fn applies_in(&self, year: i16) -> bool {
        let in_force = (self.first_year..=self.last_year).contains(&year);
        let suspended = self
            .suspended
            .is_some_and(|(first, last)| (first..=last).contains(&year));
        in_force && !suspended
    }
}

const fn fixed(month: i8, day: i8, name: &'static str) -> Holiday {
    Holiday::new(name, Rule::Fixed { month, day })
}

const fn easter(offset: i16, name: &'static str) -> Holiday {
    Holiday::new(name, Rule::Easter(offset))
}

const fn orthodox(offset: i16, name: &'static str) -> Holiday {
    Holiday::new(name, Rule::OrthodoxEaster(offset))
}

const fn nth(nth: i8, weekday: Weekday, month: i8, name: &'static str) -> Holiday {
    Holiday::new(
        name,
        Rule::Nth {
            nth,
            weekday,
            month,
        },
    )
}

const fn on_or_after(weekday: Weekday, month: i8, day: i8, name: &'static str) -> Holiday {
    Holiday::new(
        name,
        Rule::OnOrAfter {
            weekday,
            month,
            day,
        },
    )
}

use Weekday::{Friday, Monday, Thursday, Wednesday};

// Rows shared by many countries.
const NEW_YEAR: Holiday = fixed(1, 1, "New Year's Day");
const EPIPHANY: Holiday = fixed(1, 6, "Epiphany");
const LABOUR_DAY: Holiday = fixed(5, 1, "Labour Day");
const ASSUMPTION: Holiday = fixed(8, 15, "Assumption Day");
const ALL_SAINTS: Holiday = fixed(11, 1, "All Saints' Day");
const IMMACULATE_CONCEPTION: Holiday = fixed(12, 8, "Immaculate Conception");
const CHRISTMAS_EVE: Holiday = fixed(12, 24, "Christmas Eve");
const CHRISTMAS: Holiday = fixed(12, 25, "Christmas Day");
const SECOND_CHRISTMAS: Holiday = fixed(12, 26, "Second Day of Christmas");
const ST_STEPHEN: Holiday = fixed(12, 26, "St Stephen's Day");
const MAUNDY_THURSDAY: Holiday = easter(-3, "Maundy Thursday");
const GOOD_FRIDAY: Holiday = easter(-2, "Good Friday");
const EASTER_MONDAY: Holiday = easter(1, "Easter Monday");
const ASCENSION: Holiday = easter(39, "Ascension Day");
const WHIT_MONDAY: Holiday = easter(50, "Whit Monday");
const CORPUS_CHRISTI: Holiday = easter(60, "Corpus Christi");
const ORTHODOX_GOOD_FRIDAY: Holiday = orthodox(-2, "Good Friday");
const ORTHODOX_EASTER_MONDAY: Holiday = orthodox(1, "Easter Monday");
const ORTHODOX_WHIT_MONDAY: Holiday = orthodox(50, "Whit Monday");
/// Swedish and Finnish time-limit acts treat Midsummer Eve as a holiday.
const MIDSUMMER_EVE: Holiday = on_or_after(Friday, 6, 19, "Midsummer Eve");

const AT: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    EASTER_MONDAY,
    LABOUR_DAY,
    ASCENSION,
    WHIT_MONDAY,
    CORPUS_CHRISTI,
    ASSUMPTION,
    fixed(10, 26, "National Day").from(1967),
    ALL_SAINTS,
    IMMACULATE_CONCEPTION,
    CHRISTMAS,
    ST_STEPHEN,
];

const BE: &[Holiday] = &[
    NEW_YEAR,
    EASTER_MONDAY,
    LABOUR_DAY,
    ASCENSION,
    WHIT_MONDAY,
    fixed(7, 21, "National Day"),
    ASSUMPTION,
    ALL_SAINTS,
    fixed(11, 11, "Armistice Day"),
    CHRISTMAS,
];

/// Labour Code art. 154: a holiday on a weekend gives the next working day
/// off; the Easter days are exempt (they are Friday to Monday anyway).
const BG: &[Holiday] = &[
    NEW_YEAR.substituted(),
    fixed(3, 3, "Liberation Day").substituted(),
    ORTHODOX_GOOD_FRIDAY,
    orthodox(-1, "Holy Saturday"),
    ORTHODOX_EASTER_MONDAY,
    LABOUR_DAY.substituted(),
    fixed(5, 6, "St George's Day").substituted(),
    fixed(5, 24, "Day of Bulgarian Education and Culture").substituted(),
    fixed(9, 6, "Unification Day").substituted(),
    fixed(9, 22, "Independence Day").substituted(),
    CHRISTMAS_EVE.substituted(),
    CHRISTMAS.substituted(),
    SECOND_CHRISTMAS.substituted(),
];

const CH: &[Holiday] = &[
    // Only 1 August is a federal holiday; the other three are holidays in
    // every canton. Everything else varies by canton and is left out.
    NEW_YEAR,
    ASCENSION,
    fixed(8, 1, "Swiss National Day").from(1994),
    CHRISTMAS,
];

const CY: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    orthodox(-48, "Green Monday"),
    fixed(3, 25, "Greek Independence Day"),
    fixed(4, 1, "Cyprus National Day"),
    ORTHODOX_GOOD_FRIDAY,
    ORTHODOX_EASTER_MONDAY,
    LABOUR_DAY,
    ORTHODOX_WHIT_MONDAY,
    ASSUMPTION,
    fixed(10, 1, "Independence Day"),
    fixed(10, 28, "Ochi Day"),
    CHRISTMAS,
    fixed(12, 26, "Boxing Day"),
];

const CZ: &[Holiday] = &[
    NEW_YEAR,
    GOOD_FRIDAY.from(2016),
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 8, "Liberation Day"),
    fixed(7, 5, "Saints Cyril and Methodius Day"),
    fixed(7, 6, "Jan Hus Day"),
    fixed(9, 28, "St Wenceslas Day").from(2000),
    fixed(10, 28, "Independent Czechoslovak State Day"),
    fixed(11, 17, "Struggle for Freedom and Democracy Day").from(2000),
    CHRISTMAS_EVE,
    CHRISTMAS,
    ST_STEPHEN,
];

const DE: &[Holiday] = &[
    NEW_YEAR,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    LABOUR_DAY,
    ASCENSION,
    WHIT_MONDAY,
    fixed(6, 17, "Day of German Unity").from(1954).until(1990),
    fixed(10, 3, "Day of German Unity").from(1990),
    // Nationwide only for the 500th anniversary; otherwise regional.
    fixed(10, 31, "Reformation Day").only(2017),
    // Nationwide from reunification until abolished to fund care insurance.
    on_or_after(Wednesday, 11, 16, "Repentance and Prayer Day")
        .from(1990)
        .until(1994),
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const DK: &[Holiday] = &[
    NEW_YEAR,
    MAUNDY_THURSDAY,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    easter(26, "General Prayer Day").until(2023),
    ASCENSION,
    WHIT_MONDAY,
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const EE: &[Holiday] = &[
    NEW_YEAR,
    fixed(2, 24, "Independence Day"),
    GOOD_FRIDAY,
    fixed(5, 1, "Spring Day"),
    fixed(6, 23, "Victory Day"),
    fixed(6, 24, "Midsummer Day"),
    fixed(8, 20, "Day of Restoration of Independence"),
    CHRISTMAS_EVE.from(2005),
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const ES: &[Holiday] = &[
    // Maundy Thursday and Easter Monday are regional, so absent.
    NEW_YEAR,
    EPIPHANY,
    GOOD_FRIDAY,
    LABOUR_DAY,
    ASSUMPTION,
    fixed(10, 12, "National Day"),
    ALL_SAINTS,
    fixed(12, 6, "Constitution Day"),
    IMMACULATE_CONCEPTION,
    CHRISTMAS,
];

const FI: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    fixed(5, 1, "May Day"),
    ASCENSION,
    MIDSUMMER_EVE,
    fixed(12, 6, "Independence Day"),
    CHRISTMAS_EVE,
    CHRISTMAS,
    ST_STEPHEN,
];

const FR: &[Holiday] = &[
    NEW_YEAR,
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 8, "Victory in Europe Day").from(1982),
    ASCENSION,
    // Still a public holiday although it may be worked as "solidarity day".
    WHIT_MONDAY,
    fixed(7, 14, "Bastille Day"),
    ASSUMPTION,
    ALL_SAINTS,
    fixed(11, 11, "Armistice Day"),
    CHRISTMAS,
];

/// England and Wales bank holidays (Banking and Financial Dealings Act 1971
/// plus royal proclamations), used as the UK national set.
const GB: &[Holiday] = &[
    NEW_YEAR.from(1974).substituted(),
    GOOD_FRIDAY,
    EASTER_MONDAY,
    nth(1, Monday, 5, "Early May Bank Holiday")
        .from(1978)
        .suspended(1995, 1995)
        .until(2019),
    nth(1, Monday, 5, "Early May Bank Holiday").from(2021),
    // Moved to the VE Day anniversary in 1995 and 2020.
    fixed(5, 8, "Early May Bank Holiday").only(1995),
    fixed(5, 8, "Early May Bank Holiday").only(2020),
    nth(-1, Monday, 5, "Spring Bank Holiday")
        .until(2001)
        .suspended(1977, 1977),
    nth(-1, Monday, 5, "Spring Bank Holiday")
        .from(2003)
        .until(2021)
        .suspended(2012, 2012),
    nth(-1, Monday, 5, "Spring Bank Holiday").from(2023),
    // Moved into the jubilee weeks.
    fixed(6, 6, "Spring Bank Holiday").only(1977),
    fixed(6, 7, "Silver Jubilee").only(1977),
    fixed(6, 3, "Golden Jubilee").only(2002),
    fixed(6, 4, "Spring Bank Holiday").only(2002),
    fixed(6, 4, "Spring Bank Holiday").only(2012),
    fixed(6, 5, "Diamond Jubilee").only(2012),
    fixed(6, 2, "Spring Bank Holiday").only(2022),
    fixed(6, 3, "Platinum Jubilee").only(2022),
    nth(-1, Monday, 8, "Summer Bank Holiday"),
    CHRISTMAS.substituted(),
    fixed(12, 26, "Boxing Day").substituted(),
    // One-off bank holidays by proclamation.
    fixed(11, 14, "Royal Wedding").only(1973),
    fixed(7, 29, "Royal Wedding").only(1981),
    fixed(12, 31, "Millennium Celebrations").only(1999),
    fixed(4, 29, "Royal Wedding").only(2011),
    fixed(9, 19, "State Funeral of Queen Elizabeth II").only(2022),
    fixed(5, 8, "Coronation of King Charles III").only(2023),
];

const GR: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    orthodox(-48, "Clean Monday"),
    fixed(3, 25, "Independence Day"),
    ORTHODOX_GOOD_FRIDAY,
    ORTHODOX_EASTER_MONDAY,
    // Moved by decision of the labour minister (law 4468/2017 art. 14) when
    // it falls on a Sunday or in Holy Week; each move is listed once made.
    LABOUR_DAY.suspended(2024, 2024),
    fixed(5, 4, "Labour Day").only(2021),
    fixed(5, 2, "Labour Day").only(2022),
    fixed(5, 7, "Labour Day").only(2024),
    ORTHODOX_WHIT_MONDAY,
    ASSUMPTION,
    fixed(10, 28, "Ochi Day"),
    CHRISTMAS,
    fixed(12, 26, "Synaxis of the Mother of God"),
];

const HR: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 30, "Statehood Day").from(2020),
    CORPUS_CHRISTI.from(2002),
    fixed(6, 22, "Anti-Fascist Struggle Day"),
    fixed(6, 25, "Statehood Day").from(2002).until(2019),
    fixed(8, 5, "Victory and Homeland Thanksgiving Day"),
    ASSUMPTION,
    fixed(10, 8, "Independence Day").from(2002).until(2019),
    ALL_SAINTS,
    fixed(11, 18, "Remembrance Day").from(2020),
    CHRISTMAS,
    ST_STEPHEN,
];

const HU: &[Holiday] = &[
    NEW_YEAR,
    fixed(3, 15, "National Day"),
    GOOD_FRIDAY.from(2017),
    EASTER_MONDAY,
    LABOUR_DAY,
    WHIT_MONDAY,
    fixed(8, 20, "State Foundation Day"),
    fixed(10, 23, "National Day"),
    ALL_SAINTS,
    // Act LXXII of 2026.
    CHRISTMAS_EVE.from(2026),
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

/// No statutory substitute days: a holiday on a weekend earns employees a
/// day in lieu, not a public holiday.
const IE: &[Holiday] = &[
    NEW_YEAR,
    Holiday::new("St Brigid's Day", Rule::StBrigid).from(2023),
    fixed(3, 17, "St Patrick's Day"),
    fixed(3, 18, "Day of Remembrance and Recognition").only(2022),
    EASTER_MONDAY,
    nth(1, Monday, 5, "May Day").from(1994),
    nth(1, Monday, 6, "June Bank Holiday"),
    nth(1, Monday, 8, "August Bank Holiday"),
    nth(-1, Monday, 10, "October Bank Holiday").from(1977),
    CHRISTMAS,
    ST_STEPHEN,
];

const IS: &[Holiday] = &[
    // Christmas Eve and New Year's Eve are holidays only from 13:00, so
    // they stay working days.
    NEW_YEAR,
    MAUNDY_THURSDAY,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    on_or_after(Thursday, 4, 19, "First Day of Summer"),
    LABOUR_DAY,
    ASCENSION,
    WHIT_MONDAY,
    fixed(6, 17, "National Day"),
    nth(1, Monday, 8, "Commerce Day"),
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const IT: &[Holiday] = &[
    NEW_YEAR,
    // Abolished in 1977, restored from 1986.
    EPIPHANY.from(1986),
    EASTER_MONDAY,
    fixed(4, 25, "Liberation Day"),
    LABOUR_DAY,
    // Moved to a Sunday in 1977, restored from 2001.
    fixed(6, 2, "Republic Day").from(2001),
    ASSUMPTION,
    // Restored by law in 2025 with effect from 2026.
    fixed(10, 4, "St Francis of Assisi").from(2026),
    ALL_SAINTS,
    IMMACULATE_CONCEPTION,
    CHRISTMAS,
    ST_STEPHEN,
];

const LI: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    fixed(2, 2, "Candlemas"),
    fixed(3, 19, "St Joseph's Day"),
    EASTER_MONDAY,
    LABOUR_DAY,
    ASCENSION,
    WHIT_MONDAY,
    CORPUS_CHRISTI,
    fixed(8, 15, "National Day"),
    fixed(9, 8, "Nativity of Mary"),
    ALL_SAINTS,
    IMMACULATE_CONCEPTION,
    CHRISTMAS,
    ST_STEPHEN,
];

const LT: &[Holiday] = &[
    NEW_YEAR,
    fixed(2, 16, "Restoration of the State Day"),
    fixed(3, 11, "Restoration of Independence Day"),
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(6, 24, "St John's Day"),
    fixed(7, 6, "Statehood Day"),
    ASSUMPTION,
    ALL_SAINTS,
    fixed(11, 2, "All Souls' Day").from(2020),
    CHRISTMAS_EVE,
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const LU: &[Holiday] = &[
    NEW_YEAR,
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 9, "Europe Day").from(2019),
    ASCENSION,
    WHIT_MONDAY,
    fixed(6, 23, "National Day"),
    ASSUMPTION,
    ALL_SAINTS,
    CHRISTMAS,
    ST_STEPHEN,
];

/// The two independence days move to the next Monday when on a weekend.
const LV: &[Holiday] = &[
    NEW_YEAR,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 4, "Restoration of Independence Day").substituted(),
    fixed(6, 23, "Midsummer Eve"),
    fixed(6, 24, "Midsummer Day"),
    // Declared by law for the ice hockey team's world championship medal.
    fixed(5, 29, "Ice Hockey Bronze Medal Day").only(2023),
    // The closing day of the Song and Dance Celebration is a holiday in the
    // years it is held; its date is set each time, so it is listed once known.
    fixed(7, 10, "Song and Dance Celebration Closing Day").only(2023),
    fixed(11, 18, "Proclamation Day").substituted(),
    CHRISTMAS_EVE,
    CHRISTMAS,
    SECOND_CHRISTMAS,
    fixed(12, 31, "New Year's Eve"),
];

const MT: &[Holiday] = &[
    NEW_YEAR,
    fixed(2, 10, "St Paul's Shipwreck"),
    fixed(3, 19, "St Joseph's Day"),
    GOOD_FRIDAY,
    fixed(3, 31, "Freedom Day"),
    LABOUR_DAY,
    fixed(6, 7, "Sette Giugno"),
    fixed(6, 29, "St Peter and St Paul"),
    ASSUMPTION,
    fixed(9, 8, "Victory Day"),
    fixed(9, 21, "Independence Day"),
    IMMACULATE_CONCEPTION,
    fixed(12, 13, "Republic Day"),
    CHRISTMAS,
];

/// Algemene termijnenwet art. 3, which stops statutory time limits.
const NL: &[Holiday] = &[
    NEW_YEAR,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    fixed(4, 30, "Queen's Day").until(2013),
    fixed(4, 27, "King's Day").from(2014),
    fixed(5, 5, "Liberation Day"),
    ASCENSION,
    WHIT_MONDAY,
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const NO: &[Holiday] = &[
    NEW_YEAR,
    MAUNDY_THURSDAY,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 17, "Constitution Day"),
    ASCENSION,
    WHIT_MONDAY,
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

const PL: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY.from(2011),
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 3, "Constitution Day").from(1990),
    CORPUS_CHRISTI,
    fixed(7, 22, "National Day of Rebirth of Poland").until(1989),
    ASSUMPTION.from(1989),
    ALL_SAINTS,
    fixed(11, 11, "Independence Day").from(1989),
    CHRISTMAS_EVE.from(2025),
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

/// Four holidays were suspended from 2013 to 2015 under the bailout.
const PT: &[Holiday] = &[
    NEW_YEAR,
    GOOD_FRIDAY,
    fixed(4, 25, "Freedom Day").from(1975),
    LABOUR_DAY,
    CORPUS_CHRISTI.suspended(2013, 2015),
    fixed(6, 10, "Portugal Day"),
    ASSUMPTION,
    fixed(10, 5, "Republic Day").suspended(2013, 2015),
    ALL_SAINTS.suspended(2013, 2015),
    fixed(12, 1, "Restoration of Independence").suspended(2013, 2015),
    IMMACULATE_CONCEPTION,
    CHRISTMAS,
];

const RO: &[Holiday] = &[
    NEW_YEAR,
    fixed(1, 2, "Day after New Year's Day"),
    EPIPHANY.from(2024),
    fixed(1, 7, "St John the Baptist").from(2024),
    fixed(1, 24, "Union Day").from(2017),
    ORTHODOX_GOOD_FRIDAY.from(2018),
    ORTHODOX_EASTER_MONDAY,
    LABOUR_DAY,
    fixed(6, 1, "Children's Day").from(2017),
    ORTHODOX_WHIT_MONDAY.from(2008),
    ASSUMPTION,
    fixed(11, 30, "St Andrew's Day").from(2012),
    fixed(12, 1, "Great Union Day"),
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

/// Swedish time-limit act (1930:173) treats the three eves as holidays.
const SE: &[Holiday] = &[
    NEW_YEAR,
    EPIPHANY,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    LABOUR_DAY,
    ASCENSION,
    WHIT_MONDAY.until(2004),
    fixed(6, 6, "National Day").from(2005),
    MIDSUMMER_EVE,
    CHRISTMAS_EVE,
    CHRISTMAS,
    SECOND_CHRISTMAS,
    fixed(12, 31, "New Year's Eve"),
];

const SI: &[Holiday] = &[
    NEW_YEAR,
    fixed(1, 2, "New Year's Day (second day)").suspended(2013, 2016),
    fixed(2, 8, "Prešeren Day"),
    EASTER_MONDAY,
    fixed(4, 27, "Day of Uprising Against Occupation"),
    LABOUR_DAY,
    fixed(5, 2, "Labour Day (second day)"),
    fixed(6, 25, "Statehood Day"),
    // A work-free day declared after the floods of August 2023.
    fixed(8, 14, "Solidarity Day").only(2023),
    ASSUMPTION,
    fixed(10, 31, "Reformation Day"),
    ALL_SAINTS,
    CHRISTMAS,
    fixed(12, 26, "Independence and Unity Day"),
];

/// Consolidation packages turned several holidays into working days while
/// keeping them as commemorations: 1 September from 2024, 17 November from
/// 2025, and 8 May and 15 September for 2026 only.
const SK: &[Holiday] = &[
    fixed(1, 1, "Day of the Establishment of the Slovak Republic"),
    EPIPHANY,
    GOOD_FRIDAY,
    EASTER_MONDAY,
    LABOUR_DAY,
    fixed(5, 8, "Day of Victory over Fascism").suspended(2026, 2026),
    fixed(7, 5, "Saints Cyril and Methodius Day"),
    fixed(8, 29, "Slovak National Uprising Anniversary"),
    fixed(9, 1, "Constitution Day").until(2023),
    fixed(9, 15, "Our Lady of Seven Sorrows").suspended(2026, 2026),
    ALL_SAINTS,
    fixed(11, 17, "Struggle for Freedom and Democracy Day").until(2024),
    CHRISTMAS_EVE,
    CHRISTMAS,
    SECOND_CHRISTMAS,
];

/// Federal holidays (5 U.S.C. 6103), with the pre-1971 fixed dates of the
/// holidays that the Uniform Monday Holiday Act moved.
const US: &[Holiday] = &[
    NEW_YEAR.us_observed(),
    nth(3, Monday, 1, "Martin Luther King Jr. Day").from(1986),
    fixed(2, 22, "Washington's Birthday")
        .until(1970)
        .us_observed(),
    nth(3, Monday, 2, "Washington's Birthday").from(1971),
    fixed(5, 30, "Memorial Day").until(1970).us_observed(),
    nth(-1, Monday, 5, "Memorial Day").from(1971),
    fixed(6, 19, "Juneteenth National Independence Day")
        .from(2021)
        .us_observed(),
    fixed(7, 4, "Independence Day").us_observed(),
    nth(1, Monday, 9, "Labor Day"),
    fixed(10, 12, "Columbus Day").until(1970).us_observed(),
    nth(2, Monday, 10, "Columbus Day").from(1971),
    nth(4, Monday, 10, "Veterans Day").from(1971).until(1977),
    fixed(11, 11, "Veterans Day").until(1970).us_observed(),
    fixed(11, 11, "Veterans Day").from(1978).us_observed(),
    nth(4, Thursday, 11, "Thanksgiving Day"),
    CHRISTMAS.us_observed(),
];

const BR: &[Holiday] = &[
    // Carnival and Corpus Christi are optional points, not national holidays.
    NEW_YEAR,
    GOOD_FRIDAY,
    fixed(4, 21, "Tiradentes"),
    LABOUR_DAY,
    fixed(9, 7, "Independence Day"),
    fixed(10, 12, "Our Lady of Aparecida").from(1980),
    fixed(11, 2, "All Souls' Day"),
    fixed(11, 15, "Proclamation of the Republic"),
    fixed(11, 20, "Black Consciousness Day").from(2024),
    CHRISTMAS,
];

fn rules_for(country: Country) -> &'static [Holiday] {
    match country.code() {
        "AT" => AT,
        "BE" => BE,
        "BG" => BG,
        "BR" => BR,
        "CH" => CH,
        "CY" => CY,
        "CZ" => CZ,
        "DE" => DE,
        "DK" => DK,
        "EE" => EE,
        "ES" => ES,
        "FI" => FI,
        "FR" => FR,
        "GB" => GB,
        "GR" => GR,
        "HR" => HR,
        "HU" => HU,
        "IE" => IE,
        "IS" => IS,
        "IT" => IT,
        "LI" => LI,
        "LT" => LT,
        "LU" => LU,
        "LV" => LV,
        "MT" => MT,
        "NL" => NL,
        "NO" => NO,
        "PL" => PL,
        "PT" => PT,
        "RO" => RO,
        "SE" => SE,
        "SI" => SI,
        "SK" => SK,
        "US" => US,
        _ => &[],
    }
}

/// Room for one year's holidays and substitutes; the test
/// `year_lists_never_overflow_and_dates_stay_in_their_year_or_next_to_it`
/// checks every table against it.
const CAPACITY: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Entry {
    date: Date,
    name: &'static str,
    shift: Shift,
}

/// The holidays of one country in one year, on the stack so that the
/// per-day checks in deadline arithmetic never allocate.
struct YearList {
    entries: [Entry; CAPACITY],
    len: usize,
    overflowed: bool,
}

impl YearList {
    fn build(rules: &[Holiday], year: i16) -> YearList {
        let mut list = YearList {
            entries: [Entry {
                date: Date::MIN,
                name: "",
                shift: Shift::None,
            }; CAPACITY],
            len: 0,
            overflowed: false,
        };
        let western = easter_sunday(year);
        let orthodox = orthodox_easter_sunday(year);
        for holiday in rules.iter().filter(|h| h.applies_in(year)) {
            if let Some(date) = holiday.rule.date_in(year, western, orthodox) {
                list.push(Entry {
                    date,
                    name: holiday.name,
                    shift: holiday.shift,
                });
            }
        }
        // Substitutes are handed out in calendar order so that, e.g., a
        // Saturday Christmas claims Monday before a Sunday Boxing Day looks.
        let actual = list.len;
        if let Some(entries) = list.entries.get_mut(..actual) {
            entries.sort_unstable_by_key(|entry| entry.date);
        }
        for index in 0..actual {
            let Some(entry) = list.entries.get(index).copied() else {
                continue;
            };
            let substitute = match entry.shift {
                Shift::None => None,
                Shift::UsFederal => match entry.date.weekday() {
                    Weekday::Saturday => entry.date.yesterday().ok(),
                    Weekday::Sunday => entry.date.tomorrow().ok(),
                    _ => None,
                },
                Shift::NextFreeWeekday if is_weekend(entry.date) => {
                    list.next_free_weekday(entry.date)
                }
                Shift::NextFreeWeekday => None,
            };
            if let Some(date) = substitute {
                list.push(Entry {
                    date,
                    name: entry.name,
                    shift: Shift::None,
                });
            }
        }
        list
    }

    fn push(&mut self, entry: Entry) {
        match self.entries.get_mut(self.len) {
            Some(slot) => {
                *slot = entry;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }

    fn entries(&self) -> &[Entry] {
        self.entries.get(..self.len).unwrap_or_default()
    }

    fn find(&self, date: Date) -> Option<&'static str> {
        self.entries()
            .iter()
            .find(|entry| entry.date == date)
            .map(|entry| entry.name)
    }

    fn next_free_weekday(&self, after: Date) -> Option<Date> {
        let mut candidate = after.tomorrow().ok()?;
        while is_weekend(candidate) || self.find(candidate).is_some() {
            candidate = candidate.tomorrow().ok()?;
        }
        Some(candidate)
    }
}

fn is_weekend(date: Date) -> bool {
    matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn country(code: &str) -> Country {
        Country::parse(code).expect("assigned country")
    }

    fn holiday(code: &str, y: i16, m: i8, d: i8) -> Option<&'static str> {
        public_holiday(country(code), date(y, m, d))
    }

    /// The independent reference, see [`VERIFIED_THROUGH`].
    const REFERENCE: &str = include_str!("../../tests/fixtures/holidays_reference.csv");
    /// The first year in the reference table.
    const REFERENCE_FROM: i16 = 2020;

    /// Which side of the comparison has a holiday the other lacks.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum OnlyIn {
        Rules,
        Reference,
    }

    /// The weekday holidays a known difference covers.
    #[derive(Debug, Clone, Copy)]
    enum Days {
        /// These dates (ISO 8601).
        Dates(&'static [&'static str]),
        /// Every date the side that has it calls by this name.
        Named(&'static str),
    }

    /// A reviewed, deliberate disagreement with the reference.
    struct KnownDifference {
        country: &'static str,
        only_in: OnlyIn,
        days: Days,
        /// One line, for the reviewer.
        reason: &'static str,
    }

    const fn known(
        country: &'static str,
        only_in: OnlyIn,
        days: Days,
        reason: &'static str,
    ) -> KnownDifference {
        KnownDifference {
            country,
            only_in,
            days,
            reason,
        }
    }

    /// Every weekday on which the rules and the reference disagree from 2020
    /// to [`VERIFIED_THROUGH`], and why. Keep it short: a difference that is
    /// a mistake in the rules is fixed there, not listed here.
    const KNOWN_DIFFERENCES: &[KnownDifference] = &[
        known(
            "BG",
            OnlyIn::Reference,
            Days::Dates(&["2025-12-31", "2026-01-02"]),
            "non-working days by government resolution (808/2025), not holidays; ad-hoc days are left out",
        ),
        known(
            "GR",
            OnlyIn::Reference,
            Days::Dates(&["2027-05-04"]),
            "the reference predicts the ministerial move of Labour Day 2027 (Holy Saturday); not decided yet",
        ),
        known(
            "HU",
            OnlyIn::Reference,
            Days::Dates(&[
                "2020-08-21",
                "2020-12-24",
                "2021-12-24",
                "2022-03-14",
                "2022-10-31",
                "2024-08-19",
                "2024-12-24",
                "2024-12-27",
                "2025-05-02",
                "2025-10-24",
                "2025-12-24",
                "2026-01-02",
                "2026-08-21",
            ]),
            "bridge days traded for a worked Saturday by ministerial decree, not holidays; left out",
        ),
        known(
            "LV",
            OnlyIn::Reference,
            Days::Dates(&[
                "2020-06-22",
                "2021-05-03",
                "2021-06-25",
                "2021-11-19",
                "2023-05-05",
                "2024-12-23",
                "2024-12-30",
                "2025-05-02",
                "2025-11-17",
                "2026-01-02",
                "2026-06-22",
            ]),
            "bridge days traded for a worked Saturday by cabinet order, not holidays; left out",
        ),
        known(
            "NL",
            OnlyIn::Rules,
            Days::Named("Liberation Day"),
            "Algemene termijnenwet art. 3(1) lists 5 May every year; the reference keeps only lustrum years",
        ),
        known(
            "SE",
            OnlyIn::Rules,
            Days::Named("Midsummer Eve"),
            "the time-limit act (1930:173) counts the eve as a holiday; it is not a public holiday",
        ),
        known(
            "SE",
            OnlyIn::Rules,
            Days::Named("Christmas Eve"),
            "the time-limit act (1930:173) counts the eve as a holiday; it is not a public holiday",
        ),
        known(
            "SE",
            OnlyIn::Rules,
            Days::Named("New Year's Eve"),
            "the time-limit act (1930:173) counts the eve as a holiday; it is not a public holiday",
        ),
    ];

    /// One line of the reference: country, date, name.
    fn reference() -> Vec<(Country, Date, &'static str)> {
        REFERENCE
            .lines()
            .filter(|line| !line.starts_with('#') && *line != "country,date,name")
            .map(|line| {
                let mut fields = line.splitn(3, ',');
                let code = fields.next().expect("country");
                let day: Date = fields.next().expect("date").parse().expect("ISO date");
                (country(code), day, fields.next().expect("name"))
            })
            .collect()
    }

    /// The known difference that explains `day` being a holiday named
    /// `name` only on the `only_in` side, if any.
    fn explained(country: Country, day: Date, name: &str, only_in: OnlyIn) -> Option<usize> {
        KNOWN_DIFFERENCES.iter().position(|known| {
            known.country == country.code()
                && known.only_in == only_in
                && match known.days {
                    Days::Dates(dates) => dates.iter().any(|d| *d == day.to_string()),
                    Days::Named(named) => named == name,
                }
        })
    }

    #[test]
    fn rules_match_the_reference_table() {
        let reference = reference();
        let covered: Vec<Country> = Country::all().filter(|c| covers(*c)).collect();
        let mut used = vec![false; KNOWN_DIFFERENCES.len()];
        let mut unexplained = Vec::new();
        let mut compare = |country: Country, day: Date, ours, theirs| {
            let (name, only_in) = match (ours, theirs) {
                (Some(name), None) => (name, OnlyIn::Rules),
                (None, Some(name)) => (name, OnlyIn::Reference),
                _ => return,
            };
            match explained(country, day, name, only_in) {
                Some(index) => used[index] = true,
                None => unexplained.push(format!("{country} {day} {name:?} only in {only_in:?}")),
            }
        };
        for &country in &covered {
            let theirs: Vec<(Date, &str)> = reference
                .iter()
                .filter(|(c, _, _)| *c == country)
                .map(|(_, day, name)| (*day, *name))
                .collect();
            assert!(
                !theirs.is_empty(),
                "{country} is missing from the reference"
            );
            let mut day = date(REFERENCE_FROM, 1, 1);
            while day.year() <= VERIFIED_THROUGH {
                if !is_weekend(day) {
                    let their = theirs.iter().find(|(d, _)| *d == day).map(|(_, n)| *n);
                    compare(country, day, public_holiday(country, day), their);
                }
                day = day.tomorrow().expect("in range");
            }
        }
        assert!(
            unexplained.is_empty(),
            "the rules and the reference disagree; fix the rule or, if the rule is right, add a reviewed known difference:\n{}",
            unexplained.join("\n")
        );
        // A known difference that no longer occurs must go, so that the list
        // stays a list of what is true.
        let stale: Vec<String> = KNOWN_DIFFERENCES
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|(known, _)| format!("{} {:?} {:?}", known.country, known.only_in, known.days))
            .collect();
        assert!(
            stale.is_empty(),
            "known differences that no longer occur: {stale:?}"
        );
        // Every covered country and nothing else is in the reference.
        for (c, _, _) in &reference {
            assert!(
                covered.contains(c),
                "{c} has no rules but is in the reference"
            );
        }
    }

    #[test]
    fn the_reference_spans_the_verified_years() {
        let years: Vec<i16> = reference().iter().map(|(_, day, _)| day.year()).collect();
        assert_eq!(years.iter().min(), Some(&REFERENCE_FROM));
        assert_eq!(years.iter().max(), Some(&VERIFIED_THROUGH));
        // Each listed date of a known difference lies in the compared range
        // and on a weekday, or it could never match.
        for known in KNOWN_DIFFERENCES {
            assert!(
                !known.reason.is_empty() && !known.reason.contains('\n'),
                "{} needs a one-line reason",
                known.country
            );
            if let Days::Dates(dates) = known.days {
                for text in dates {
                    let day: Date = text.parse().expect("ISO date");
                    assert!(
                        (REFERENCE_FROM..=VERIFIED_THROUGH).contains(&day.year()),
                        "{text}"
                    );
                    assert!(!is_weekend(day), "{text}");
                }
            }
        }
    }

    #[test]
    fn verified_ends_with_the_verified_year() {
        assert!(verified(date(2020, 1, 1)));
        assert!(verified(date(1990, 6, 1)));
        assert!(verified(date(VERIFIED_THROUGH, 12, 31)));
        assert!(!verified(date(VERIFIED_THROUGH + 1, 1, 1)));
    }

    #[test]
    fn western_easter_dates() {
        let known = [
            (1818, 3, 22),
            (1943, 4, 25),
            (1970, 3, 29),
            (1981, 4, 19),
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2016, 3, 27),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2038, 4, 25),
            (2100, 3, 28),
            (2285, 3, 22),
        ];
        for (y, m, d) in known {
            assert_eq!(easter_sunday(y), Some(date(y, m, d)), "{y}");
        }
    }

    #[test]
    fn orthodox_easter_dates() {
        let known = [
            (2010, 4, 4),
            (2021, 5, 2),
            (2022, 4, 24),
            (2023, 4, 16),
            (2024, 5, 5),
            (2025, 4, 20),
            (2026, 4, 12),
            (2027, 5, 2),
        ];
        for (y, m, d) in known {
            assert_eq!(orthodox_easter_sunday(y), Some(date(y, m, d)), "{y}");
        }
    }

    #[test]
    fn easter_is_always_a_sunday_in_range() {
        for year in 1583..=4099 {
            let western = easter_sunday(year).expect("representable");
            assert_eq!(western.weekday(), Weekday::Sunday, "{year}");
            assert!((date(year, 3, 22)..=date(year, 4, 25)).contains(&western));
            let orthodox = orthodox_easter_sunday(year).expect("representable");
            assert_eq!(orthodox.weekday(), Weekday::Sunday, "{year}");
        }
    }

    #[test]
    fn germany() {
        for (y, m, d, name) in [
            (2025, 1, 1, "New Year's Day"),
            (2025, 4, 18, "Good Friday"),
            (2025, 4, 21, "Easter Monday"),
            (2025, 5, 29, "Ascension Day"),
            (2025, 6, 9, "Whit Monday"),
            (2025, 10, 3, "Day of German Unity"),
            (2026, 4, 3, "Good Friday"),
            (2026, 4, 6, "Easter Monday"),
            (2026, 5, 14, "Ascension Day"),
            (2026, 5, 25, "Whit Monday"),
            (2026, 12, 26, "Second Day of Christmas"),
            (2017, 10, 31, "Reformation Day"),
            (1994, 11, 16, "Repentance and Prayer Day"),
            (1985, 6, 17, "Day of German Unity"),
        ] {
            assert_eq!(holiday("DE", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        // Reformation Day, Corpus Christi and Epiphany are regional.
        assert_eq!(holiday("DE", 2025, 10, 31), None);
        assert_eq!(holiday("DE", 2018, 10, 31), None);
        assert_eq!(holiday("DE", 2026, 6, 4), None);
        assert_eq!(holiday("DE", 2026, 1, 6), None);
        assert_eq!(holiday("DE", 1995, 11, 22), None);
        assert_eq!(holiday("DE", 2026, 6, 17), None);
    }

    #[test]
    fn france() {
        for (y, m, d, name) in [
            (2025, 4, 21, "Easter Monday"),
            (2025, 5, 8, "Victory in Europe Day"),
            (2025, 7, 14, "Bastille Day"),
            (2025, 11, 11, "Armistice Day"),
            (2026, 5, 14, "Ascension Day"),
            (2026, 5, 25, "Whit Monday"),
            (2026, 8, 15, "Assumption Day"),
        ] {
            assert_eq!(holiday("FR", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        // Good Friday and 26 December are Alsace-Moselle only.
        assert_eq!(holiday("FR", 2026, 4, 3), None);
        assert_eq!(holiday("FR", 2025, 12, 26), None);
    }

    #[test]
    fn great_britain_with_substitutes() {
        for (y, m, d, name) in [
            (2025, 4, 18, "Good Friday"),
            (2025, 5, 5, "Early May Bank Holiday"),
            (2025, 5, 26, "Spring Bank Holiday"),
            (2025, 8, 25, "Summer Bank Holiday"),
            (2026, 5, 4, "Early May Bank Holiday"),
            (2026, 5, 25, "Spring Bank Holiday"),
            (2026, 8, 31, "Summer Bank Holiday"),
            // Boxing Day 2026 is a Saturday.
            (2026, 12, 28, "Boxing Day"),
            // New Year's Day 2022 was a Saturday.
            (2022, 1, 3, "New Year's Day"),
            // Christmas 2022 on Sunday: Boxing Day Monday, Christmas Tuesday.
            (2022, 12, 26, "Boxing Day"),
            (2022, 12, 27, "Christmas Day"),
            // Christmas 2021 on Saturday and Boxing Day on Sunday.
            (2021, 12, 27, "Christmas Day"),
            (2021, 12, 28, "Boxing Day"),
            (2020, 5, 8, "Early May Bank Holiday"),
            (2022, 6, 2, "Spring Bank Holiday"),
            (2022, 6, 3, "Platinum Jubilee"),
            (2022, 9, 19, "State Funeral of Queen Elizabeth II"),
            (2023, 5, 8, "Coronation of King Charles III"),
        ] {
            assert_eq!(holiday("GB", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        assert_eq!(holiday("GB", 2020, 5, 4), None);
        assert_eq!(holiday("GB", 2022, 5, 30), None);
        assert_eq!(holiday("GB", 2026, 12, 29), None);
        // St Patrick's Day is Northern Ireland only.
        assert_eq!(holiday("GB", 2026, 3, 17), None);
    }

    #[test]
    fn ireland() {
        for (y, m, d, name) in [
            (2025, 2, 3, "St Brigid's Day"),
            (2025, 3, 17, "St Patrick's Day"),
            (2025, 6, 2, "June Bank Holiday"),
            (2025, 10, 27, "October Bank Holiday"),
            (2026, 2, 2, "St Brigid's Day"),
            (2026, 5, 4, "May Day"),
            (2026, 8, 3, "August Bank Holiday"),
            (2026, 12, 26, "St Stephen's Day"),
            // 1 February 2030 is a Friday.
            (2030, 2, 1, "St Brigid's Day"),
            (2022, 3, 18, "Day of Remembrance and Recognition"),
        ] {
            assert_eq!(holiday("IE", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        // Good Friday is not a public holiday in Ireland.
        assert_eq!(holiday("IE", 2026, 4, 3), None);
        assert_eq!(holiday("IE", 2022, 2, 7), None);
        assert_eq!(holiday("IE", 2030, 2, 4), None);
    }

    #[test]
    fn poland() {
        for (y, m, d, name) in [
            (2025, 1, 6, "Epiphany"),
            (2025, 5, 3, "Constitution Day"),
            (2025, 6, 19, "Corpus Christi"),
            (2025, 12, 24, "Christmas Eve"),
            (2026, 4, 6, "Easter Monday"),
            (2026, 6, 4, "Corpus Christi"),
            (2026, 11, 11, "Independence Day"),
        ] {
            assert_eq!(holiday("PL", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        assert_eq!(holiday("PL", 2024, 12, 24), None);
        assert_eq!(holiday("PL", 2026, 4, 3), None);
    }

    #[test]
    fn brazil() {
        for (y, m, d, name) in [
            (2025, 4, 18, "Good Friday"),
            (2025, 4, 21, "Tiradentes"),
            (2025, 11, 20, "Black Consciousness Day"),
            (2026, 9, 7, "Independence Day"),
            (2026, 10, 12, "Our Lady of Aparecida"),
            (2026, 11, 2, "All Souls' Day"),
            (2026, 11, 20, "Black Consciousness Day"),
        ] {
            assert_eq!(holiday("BR", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        // Carnival Monday/Tuesday and Corpus Christi are optional points.
        assert_eq!(holiday("BR", 2026, 2, 16), None);
        assert_eq!(holiday("BR", 2026, 2, 17), None);
        assert_eq!(holiday("BR", 2026, 6, 4), None);
        assert_eq!(holiday("BR", 2023, 11, 20), None);
    }

    #[test]
    fn united_states_with_observed_days() {
        for (y, m, d, name) in [
            (2025, 1, 20, "Martin Luther King Jr. Day"),
            (2025, 5, 26, "Memorial Day"),
            (2025, 6, 19, "Juneteenth National Independence Day"),
            (2025, 11, 27, "Thanksgiving Day"),
            (2026, 7, 3, "Independence Day"),
            (2026, 10, 12, "Columbus Day"),
            (2026, 11, 26, "Thanksgiving Day"),
            // Juneteenth 2021 fell on a Saturday.
            (2021, 6, 18, "Juneteenth National Independence Day"),
            // New Year's Day 2022 on Saturday is observed the year before.
            (2021, 12, 31, "New Year's Day"),
            // Christmas 2022 on Sunday is observed on Monday.
            (2022, 12, 26, "Christmas Day"),
            (1975, 10, 27, "Veterans Day"),
        ] {
            assert_eq!(holiday("US", y, m, d), Some(name), "{y}-{m}-{d}");
        }
        assert_eq!(holiday("US", 2020, 6, 19), None);
        assert_eq!(holiday("US", 2026, 11, 27), None);
        assert_eq!(holiday("US", 2026, 12, 24), None);
        assert_eq!(holiday("US", 1975, 11, 11), None);
    }

    #[test]
    fn orthodox_countries() {
        assert_eq!(holiday("GR", 2026, 2, 23), Some("Clean Monday"));
        assert_eq!(holiday("GR", 2026, 4, 10), Some("Good Friday"));
        assert_eq!(holiday("GR", 2026, 4, 13), Some("Easter Monday"));
        assert_eq!(holiday("GR", 2026, 6, 1), Some("Whit Monday"));
        assert_eq!(holiday("RO", 2026, 6, 1), Some("Children's Day"));
        assert_eq!(holiday("CY", 2025, 3, 3), Some("Green Monday"));
        // Labour Day 2024 fell in Holy Week and was moved after Easter.
        assert_eq!(holiday("GR", 2024, 5, 1), None);
        assert_eq!(holiday("GR", 2024, 5, 7), Some("Labour Day"));
        assert_eq!(holiday("GR", 2022, 5, 2), Some("Labour Day"));
        // Western Easter Monday 2026 is a normal day in Greece.
        assert_eq!(holiday("GR", 2026, 4, 6), None);
    }

    #[test]
    fn bulgarian_substitutes() {
        // 24–26 December 2022 fell Saturday to Monday.
        assert_eq!(holiday("BG", 2022, 12, 27), Some("Christmas Eve"));
        assert_eq!(holiday("BG", 2022, 12, 28), Some("Christmas Day"));
        // 1 May 2021 (Saturday) collided with Orthodox Easter Monday.
        assert_eq!(holiday("BG", 2021, 5, 3), Some("Easter Monday"));
        assert_eq!(holiday("BG", 2021, 5, 4), Some("Labour Day"));
    }

    #[test]
    fn other_covered_countries() {
        for (code, y, m, d, name) in [
            ("AT", 2026, 10, 26, "National Day"),
            ("BE", 2026, 7, 21, "National Day"),
            ("CH", 2026, 5, 14, "Ascension Day"),
            ("CZ", 2026, 7, 6, "Jan Hus Day"),
            ("DK", 2023, 5, 5, "General Prayer Day"),
            ("EE", 2026, 6, 23, "Victory Day"),
            ("ES", 2026, 10, 12, "National Day"),
            ("FI", 2026, 6, 19, "Midsummer Eve"),
            ("HR", 2026, 5, 30, "Statehood Day"),
            ("HU", 2026, 10, 23, "National Day"),
            ("HU", 2026, 12, 24, "Christmas Eve"),
            ("IS", 2026, 4, 23, "First Day of Summer"),
            ("IT", 2027, 10, 4, "St Francis of Assisi"),
            ("LI", 2026, 3, 19, "St Joseph's Day"),
            ("LT", 2026, 7, 6, "Statehood Day"),
            ("LU", 2026, 5, 9, "Europe Day"),
            ("LV", 2026, 5, 4, "Restoration of Independence Day"),
            ("LV", 2025, 11, 18, "Proclamation Day"),
            // 18 November 2028 is a Saturday.
            ("LV", 2028, 11, 20, "Proclamation Day"),
            ("MT", 2026, 3, 19, "St Joseph's Day"),
            ("NL", 2026, 4, 27, "King's Day"),
            ("NL", 2025, 5, 5, "Liberation Day"),
            ("NO", 2026, 5, 17, "Constitution Day"),
            ("PT", 2026, 6, 4, "Corpus Christi"),
            ("RO", 2026, 1, 24, "Union Day"),
            ("SE", 2026, 6, 19, "Midsummer Eve"),
            ("SE", 2026, 6, 6, "National Day"),
            ("SI", 2026, 2, 8, "Prešeren Day"),
            ("SK", 2026, 8, 29, "Slovak National Uprising Anniversary"),
        ] {
            assert_eq!(holiday(code, y, m, d), Some(name), "{code} {y}-{m}-{d}");
        }
        assert_eq!(holiday("DK", 2024, 4, 26), None);
        assert_eq!(holiday("HU", 2025, 12, 24), None);
        assert_eq!(holiday("PT", 2014, 6, 19), None);
        assert_eq!(holiday("SK", 2026, 5, 8), None);
        assert_eq!(
            holiday("SK", 2027, 5, 8),
            Some("Day of Victory over Fascism")
        );
        assert_eq!(holiday("SK", 2025, 9, 1), None);
        assert_eq!(holiday("SK", 2025, 11, 17), None);
        assert_eq!(holiday("IT", 2025, 10, 4), None);
    }

    #[test]
    fn ordinary_days_are_not_holidays() {
        for code in ["DE", "FR", "GB", "IE", "PL", "BR", "US", "NL", "ES", "IT"] {
            for (y, m, d) in [(2025, 3, 12), (2026, 2, 18), (2026, 9, 22), (2026, 7, 8)] {
                assert_eq!(holiday(code, y, m, d), None, "{code} {y}-{m}-{d}");
            }
        }
        // Uncovered countries have no holidays at all.
        assert_eq!(holiday("JP", 2026, 1, 1), None);
        assert_eq!(holiday("AU", 2025, 12, 25), None);
    }

    #[test]
    fn year_lists_never_overflow_and_dates_stay_in_their_year_or_next_to_it() {
        for country in Country::all() {
            let rules = rules_for(country);
            for year in 1900..=2200 {
                let list = YearList::build(rules, year);
                assert!(!list.overflowed, "{country} {year}");
                for entry in list.entries() {
                    let distance = (i32::from(entry.date.year()) - i32::from(year)).abs();
                    assert!(distance <= 1, "{country} {year} {}", entry.name);
                }
            }
        }
    }
}
