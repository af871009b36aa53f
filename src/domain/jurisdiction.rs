//! Where a data subject lives, as far as deadlines care: the country (and
//! optionally an ISO 3166-2 subdivision), the privacy regime that governs the
//! request, the local time zone in which "a day" is counted, and which days
//! are working days.
//!
//! Everything here is table-driven and free of I/O so that the legal choices
//! are reviewable in one place and unit-testable.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use super::holidays;

/// Why a jurisdiction could not be parsed.
///
/// Messages state what is accepted and echo at most the short offending code
/// (see [`InputEcho`]) so that untrusted input never ends up verbatim in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JurisdictionError {
    #[error("invalid country code{input}: {reason}")]
    InvalidCountry {
        input: InputEcho,
        reason: CountryCodeProblem,
    },
    #[error("invalid subdivision code{input}: {reason}")]
    InvalidSubdivision {
        input: InputEcho,
        reason: SubdivisionCodeProblem,
    },
}

/// What exactly was wrong with a country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountryCodeProblem {
    /// Not exactly two ASCII letters.
    NotTwoLetters,
    /// Two letters, but not all upper-case; rejected rather than normalised
    /// so that callers fix the producer instead of relying on leniency here.
    LowerCase,
    /// Two upper-case letters that ISO 3166-1 does not assign (e.g. `XX`).
    Unassigned,
}

impl fmt::Display for CountryCodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotTwoLetters => "expected two upper-case letters (ISO 3166-1 alpha-2), e.g. DE",
            Self::LowerCase => "country codes are upper-case (ISO 3166-1 alpha-2), e.g. DE not de",
            Self::Unassigned => "not an assigned ISO 3166-1 alpha-2 code; expected one such as DE",
        })
    }
}

/// What exactly was wrong with a subdivision code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubdivisionCodeProblem {
    /// Not of the shape `CC-X`, `CC-XX` or `CC-XXX`.
    Malformed,
    /// Well-formed, but its prefix names another country than the one given.
    WrongCountry(Country),
}

impl fmt::Display for SubdivisionCodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str(
                "expected an ISO 3166-2 code: the country code, a hyphen, then 1 to 3 \
                 upper-case letters or digits, e.g. US-CA",
            ),
            Self::WrongCountry(country) => write!(
                f,
                "its prefix must be the country code {country}, e.g. US-CA only with US"
            ),
        }
    }
}

/// The offending input, kept only when it is short and made of code
/// characters; anything else is dropped so errors cannot carry arbitrary
/// user data. Displays as ` "de"` (with a leading space) or as nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEcho(Option<String>);

impl InputEcho {
    fn of(input: &str, max_len: usize) -> Self {
        let printable = !input.is_empty()
            && input.len() <= max_len
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        Self(printable.then(|| input.to_owned()))
    }

    /// The echoed code, if it was short enough to keep.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Display for InputEcho {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(code) => write!(f, " {code:?}"),
            None => Ok(()),
        }
    }
}

/// The privacy regime whose deadlines apply to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Regime {
    Gdpr,
    Ccpa,
    Lgpd,
}

impl Regime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gdpr => "GDPR",
            Self::Ccpa => "CCPA",
            Self::Lgpd => "LGPD",
        }
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The single table deciding the regime: first row whose country matches and
/// whose subdivision (if the row names one) matches wins.
///
/// Countries not listed fall back to GDPR: the service is built for GDPR
/// requests, GDPR reaches subjects outside the EU through Art. 3(2), and its
/// one-month clock is the strictest of the three, so defaulting to it never
/// lets a request run late. The EU/EEA/UK rows are listed explicitly anyway so
/// that the set of countries where GDPR applies by law is visible (and
/// testable), not merely implied by the default.
const REGIME_TABLE: &[(&str, Option<&str>, Regime)] = &[
    // The 27 EU member states.
    ("AT", None, Regime::Gdpr),
    ("BE", None, Regime::Gdpr),
    ("BG", None, Regime::Gdpr),
    ("CY", None, Regime::Gdpr),
    ("CZ", None, Regime::Gdpr),
    ("DE", None, Regime::Gdpr),
    ("DK", None, Regime::Gdpr),
    ("EE", None, Regime::Gdpr),
    ("ES", None, Regime::Gdpr),
    ("FI", None, Regime::Gdpr),
    ("FR", None, Regime::Gdpr),
    ("GR", None, Regime::Gdpr),
    ("HR", None, Regime::Gdpr),
    ("HU", None, Regime::Gdpr),
    ("IE", None, Regime::Gdpr),
    ("IT", None, Regime::Gdpr),
    ("LT", None, Regime::Gdpr),
    ("LU", None, Regime::Gdpr),
    ("LV", None, Regime::Gdpr),
    ("MT", None, Regime::Gdpr),
    ("NL", None, Regime::Gdpr),
    ("PL", None, Regime::Gdpr),
    ("PT", None, Regime::Gdpr),
    ("RO", None, Regime::Gdpr),
    ("SE", None, Regime::Gdpr),
    ("SI", None, Regime::Gdpr),
    ("SK", None, Regime::Gdpr),
    // The EEA states outside the EU, which apply the GDPR via the EEA Agreement.
    ("IS", None, Regime::Gdpr),
    ("LI", None, Regime::Gdpr),
    ("NO", None, Regime::Gdpr),
    // The UK GDPR keeps the same response periods.
    ("GB", None, Regime::Gdpr),
    // Only California residents get CCPA rights; other US states fall through.
    ("US", Some("US-CA"), Regime::Ccpa),
    ("BR", None, Regime::Lgpd),
];

/// A regime for countries absent from [`REGIME_TABLE`].
const DEFAULT_REGIME: Regime = Regime::Gdpr;

/// Every officially assigned ISO 3166-1 alpha-2 code, sorted so that parsing
/// is a binary search, each with the IANA zone of its capital (or, where the
/// capital has no zone of its own, the zone the capital's clocks follow).
///
/// Territories without a capital use the zone of their only settlement or,
/// when uninhabited, of the administering state's base; those rows are marked.
const COUNTRIES: [(&str, &str); 249] = [
    ("AD", "Europe/Andorra"),
    ("AE", "Asia/Dubai"),
    ("AF", "Asia/Kabul"),
    ("AG", "America/Antigua"),
    ("AI", "America/Anguilla"),
    ("AL", "Europe/Tirane"),
    ("AM", "Asia/Yerevan"),
    ("AO", "Africa/Luanda"),
    // Antarctica has no capital; UTC is what its treaty-area bases share.
    ("AQ", "Etc/UTC"),
    ("AR", "America/Argentina/Buenos_Aires"),
    ("AS", "Pacific/Pago_Pago"),
    ("AT", "Europe/Vienna"),
    ("AU", "Australia/Sydney"),
    ("AW", "America/Aruba"),
    ("AX", "Europe/Mariehamn"),
    ("AZ", "Asia/Baku"),
    ("BA", "Europe/Sarajevo"),
    ("BB", "America/Barbados"),
    ("BD", "Asia/Dhaka"),
    ("BE", "Europe/Brussels"),
    ("BF", "Africa/Ouagadougou"),
    ("BG", "Europe/Sofia"),
    ("BH", "Asia/Bahrain"),
    ("BI", "Africa/Bujumbura"),
    ("BJ", "Africa/Porto-Novo"),
    ("BL", "America/St_Barthelemy"),
    ("BM", "Atlantic/Bermuda"),
    ("BN", "Asia/Brunei"),
    ("BO", "America/La_Paz"),
    ("BQ", "America/Kralendijk"),
    ("BR", "America/Sao_Paulo"),
    ("BS", "America/Nassau"),
    ("BT", "Asia/Thimphu"),
    // Uninhabited Norwegian dependency: Norwegian time.
    ("BV", "Europe/Oslo"),
    ("BW", "Africa/Gaborone"),
    ("BY", "Europe/Minsk"),
    ("BZ", "America/Belize"),
    ("CA", "America/Toronto"),
    ("CC", "Indian/Cocos"),
    ("CD", "Africa/Kinshasa"),
    ("CF", "Africa/Bangui"),
    ("CG", "Africa/Brazzaville"),
    ("CH", "Europe/Zurich"),
    ("CI", "Africa/Abidjan"),
    ("CK", "Pacific/Rarotonga"),
    ("CL", "America/Santiago"),
    ("CM", "Africa/Douala"),
    ("CN", "Asia/Shanghai"),
    ("CO", "America/Bogota"),
    ("CR", "America/Costa_Rica"),
    ("CU", "America/Havana"),
    ("CV", "Atlantic/Cape_Verde"),
    ("CW", "America/Curacao"),
    ("CX", "Indian/Christmas"),
    ("CY", "Asia/Nicosia"),
    ("CZ", "Europe/Prague"),
    ("DE", "Europe/Berlin"),
    ("DJ", "Africa/Djibouti"),
    ("DK", "Europe/Copenhagen"),
    ("DM", "America/Dominica"),
    ("DO", "America/Santo_Domingo"),
    ("DZ", "Africa/Algiers"),
    ("EC", "America/Guayaquil"),
    ("EE", "Europe/Tallinn"),
    ("EG", "Africa/Cairo"),
    ("EH", "Africa/El_Aaiun"),
    ("ER", "Africa/Asmara"),
    ("ES", "Europe/Madrid"),
    ("ET", "Africa/Addis_Ababa"),
    ("FI", "Europe/Helsinki"),
    ("FJ", "Pacific/Fiji"),
    ("FK", "Atlantic/Stanley"),
    ("FM", "Pacific/Pohnpei"),
    ("FO", "Atlantic/Faroe"),
    ("FR", "Europe/Paris"),
    ("GA", "Africa/Libreville"),
    ("GB", "Europe/London"),
    ("GD", "America/Grenada"),
    ("GE", "Asia/Tbilisi"),
    ("GF", "America/Cayenne"),
    ("GG", "Europe/Guernsey"),
    ("GH", "Africa/Accra"),
    ("GI", "Europe/Gibraltar"),
    ("GL", "America/Nuuk"),
    ("GM", "Africa/Banjul"),
    ("GN", "Africa/Conakry"),
    ("GP", "America/Guadeloupe"),
    ("GQ", "Africa/Malabo"),
    ("GR", "Europe/Athens"),
    ("GS", "Atlantic/South_Georgia"),
    ("GT", "America/Guatemala"),
    ("GU", "Pacific/Guam"),
    ("GW", "Africa/Bissau"),
    ("GY", "America/Guyana"),
    ("HK", "Asia/Hong_Kong"),
    // Uninhabited Australian territory: the zone of the nearby French
    // Kerguelen base matches its longitude better than Canberra's would.
    ("HM", "Indian/Kerguelen"),
    ("HN", "America/Tegucigalpa"),
    ("HR", "Europe/Zagreb"),
    ("HT", "America/Port-au-Prince"),
    ("HU", "Europe/Budapest"),
    ("ID", "Asia/Jakarta"),
    ("IE", "Europe/Dublin"),
    ("IL", "Asia/Jerusalem"),
    ("IM", "Europe/Isle_of_Man"),
    ("IN", "Asia/Kolkata"),
    ("IO", "Indian/Chagos"),
    ("IQ", "Asia/Baghdad"),
    ("IR", "Asia/Tehran"),
    ("IS", "Atlantic/Reykjavik"),
    ("IT", "Europe/Rome"),
    ("JE", "Europe/Jersey"),
    ("JM", "America/Jamaica"),
    ("JO", "Asia/Amman"),
    ("JP", "Asia/Tokyo"),
    ("KE", "Africa/Nairobi"),
    ("KG", "Asia/Bishkek"),
    ("KH", "Asia/Phnom_Penh"),
    ("KI", "Pacific/Tarawa"),
    ("KM", "Indian/Comoro"),
    ("KN", "America/St_Kitts"),
    ("KP", "Asia/Pyongyang"),
    ("KR", "Asia/Seoul"),
    ("KW", "Asia/Kuwait"),
    ("KY", "America/Cayman"),
    // Astana keeps Almaty's clock.
    ("KZ", "Asia/Almaty"),
    ("LA", "Asia/Vientiane"),
    ("LB", "Asia/Beirut"),
    ("LC", "America/St_Lucia"),
    ("LI", "Europe/Vaduz"),
    ("LK", "Asia/Colombo"),
    ("LR", "Africa/Monrovia"),
    ("LS", "Africa/Maseru"),
    ("LT", "Europe/Vilnius"),
    ("LU", "Europe/Luxembourg"),
    ("LV", "Europe/Riga"),
    ("LY", "Africa/Tripoli"),
    ("MA", "Africa/Casablanca"),
    ("MC", "Europe/Monaco"),
    ("MD", "Europe/Chisinau"),
    ("ME", "Europe/Podgorica"),
    ("MF", "America/Marigot"),
    ("MG", "Indian/Antananarivo"),
    ("MH", "Pacific/Majuro"),
    ("MK", "Europe/Skopje"),
    ("ML", "Africa/Bamako"),
    ("MM", "Asia/Yangon"),
    ("MN", "Asia/Ulaanbaatar"),
    ("MO", "Asia/Macau"),
    ("MP", "Pacific/Saipan"),
    ("MQ", "America/Martinique"),
    ("MR", "Africa/Nouakchott"),
    ("MS", "America/Montserrat"),
    ("MT", "Europe/Malta"),
    ("MU", "Indian/Mauritius"),
    ("MV", "Indian/Maldives"),
    ("MW", "Africa/Blantyre"),
    ("MX", "America/Mexico_City"),
    ("MY", "Asia/Kuala_Lumpur"),
    ("MZ", "Africa/Maputo"),
    ("NA", "Africa/Windhoek"),
    ("NC", "Pacific/Noumea"),
    ("NE", "Africa/Niamey"),
    ("NF", "Pacific/Norfolk"),
    ("NG", "Africa/Lagos"),
    ("NI", "America/Managua"),
    ("NL", "Europe/Amsterdam"),
    ("NO", "Europe/Oslo"),
    ("NP", "Asia/Kathmandu"),
    ("NR", "Pacific/Nauru"),
    ("NU", "Pacific/Niue"),
    ("NZ", "Pacific/Auckland"),
    ("OM", "Asia/Muscat"),
    ("PA", "America/Panama"),
    ("PE", "America/Lima"),
    ("PF", "Pacific/Tahiti"),
    ("PG", "Pacific/Port_Moresby"),
    ("PH", "Asia/Manila"),
    ("PK", "Asia/Karachi"),
    ("PL", "Europe/Warsaw"),
    ("PM", "America/Miquelon"),
    ("PN", "Pacific/Pitcairn"),
    ("PR", "America/Puerto_Rico"),
    // Ramallah, the seat of government, follows the West Bank zone.
    ("PS", "Asia/Hebron"),
    ("PT", "Europe/Lisbon"),
    ("PW", "Pacific/Palau"),
    ("PY", "America/Asuncion"),
    ("QA", "Asia/Qatar"),
    ("RE", "Indian/Reunion"),
    ("RO", "Europe/Bucharest"),
    ("RS", "Europe/Belgrade"),
    ("RU", "Europe/Moscow"),
    ("RW", "Africa/Kigali"),
    ("SA", "Asia/Riyadh"),
    ("SB", "Pacific/Guadalcanal"),
    ("SC", "Indian/Mahe"),
    ("SD", "Africa/Khartoum"),
    ("SE", "Europe/Stockholm"),
    ("SG", "Asia/Singapore"),
    ("SH", "Atlantic/St_Helena"),
    ("SI", "Europe/Ljubljana"),
    ("SJ", "Arctic/Longyearbyen"),
    ("SK", "Europe/Bratislava"),
    ("SL", "Africa/Freetown"),
    ("SM", "Europe/San_Marino"),
    ("SN", "Africa/Dakar"),
    ("SO", "Africa/Mogadishu"),
    ("SR", "America/Paramaribo"),
    ("SS", "Africa/Juba"),
    ("ST", "Africa/Sao_Tome"),
    ("SV", "America/El_Salvador"),
    ("SX", "America/Lower_Princes"),
    ("SY", "Asia/Damascus"),
    ("SZ", "Africa/Mbabane"),
    ("TC", "America/Grand_Turk"),
    ("TD", "Africa/Ndjamena"),
    ("TF", "Indian/Kerguelen"),
    ("TG", "Africa/Lome"),
    ("TH", "Asia/Bangkok"),
    ("TJ", "Asia/Dushanbe"),
    ("TK", "Pacific/Fakaofo"),
    ("TL", "Asia/Dili"),
    ("TM", "Asia/Ashgabat"),
    ("TN", "Africa/Tunis"),
    ("TO", "Pacific/Tongatapu"),
    ("TR", "Europe/Istanbul"),
    ("TT", "America/Port_of_Spain"),
    ("TV", "Pacific/Funafuti"),
    ("TW", "Asia/Taipei"),
    ("TZ", "Africa/Dar_es_Salaam"),
    ("UA", "Europe/Kyiv"),
    ("UG", "Africa/Kampala"),
    // No capital; Wake Island holds most of the (transient) population.
    ("UM", "Pacific/Wake"),
    ("US", "America/New_York"),
    ("UY", "America/Montevideo"),
    ("UZ", "Asia/Tashkent"),
    ("VA", "Europe/Vatican"),
    ("VC", "America/St_Vincent"),
    ("VE", "America/Caracas"),
    ("VG", "America/Tortola"),
    ("VI", "America/St_Thomas"),
    // Hanoi keeps the same clock as Ho Chi Minh City, which names the zone.
    ("VN", "Asia/Ho_Chi_Minh"),
    ("VU", "Pacific/Efate"),
    ("WF", "Pacific/Wallis"),
    ("WS", "Pacific/Apia"),
    ("YE", "Asia/Aden"),
    ("YT", "Indian/Mayotte"),
    ("ZA", "Africa/Johannesburg"),
    ("ZM", "Africa/Lusaka"),
    ("ZW", "Africa/Harare"),
];

/// Subdivisions whose clocks differ from the capital's. Each uses the zone of
/// the subdivision's predominant population; subdivisions not listed use
/// their country's row in [`COUNTRIES`].
const SUBDIVISION_ZONES: &[(&str, &str)] = &[
    ("AU-QLD", "Australia/Brisbane"),
    ("AU-WA", "Australia/Perth"),
    ("BR-AM", "America/Manaus"),
    ("CA-BC", "America/Vancouver"),
    ("ES-CN", "Atlantic/Canary"),
    ("PT-20", "Atlantic/Azores"),
    ("PT-30", "Atlantic/Madeira"),
    ("US-AK", "America/Anchorage"),
    ("US-AZ", "America/Phoenix"),
    ("US-CA", "America/Los_Angeles"),
    ("US-CO", "America/Denver"),
    ("US-HI", "Pacific/Honolulu"),
    ("US-IL", "America/Chicago"),
    ("US-NV", "America/Los_Angeles"),
    ("US-NY", "America/New_York"),
    ("US-OR", "America/Los_Angeles"),
    ("US-TX", "America/Chicago"),
    ("US-WA", "America/Los_Angeles"),
];

/// An officially assigned ISO 3166-1 alpha-2 country code.
///
/// Internally an index into the sorted code table, so it is one byte, `Copy`,
/// and orders alphabetically.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country(u8);

impl Country {
    /// Parses an upper-case, officially assigned ISO 3166-1 alpha-2 code.
    pub fn parse(code: &str) -> Result<Country, JurisdictionError> {
        let invalid = |reason| JurisdictionError::InvalidCountry {
            // Three characters still shows a mistaken alpha-3 code like DEU.
            input: InputEcho::of(code, 3),
            reason,
        };
        let bytes = code.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(invalid(CountryCodeProblem::NotTwoLetters));
        }
        if bytes.iter().any(u8::is_ascii_lowercase) {
            return Err(invalid(CountryCodeProblem::LowerCase));
        }
        COUNTRIES
            .binary_search_by(|(assigned, _)| assigned.as_bytes().cmp(bytes))
            .ok()
            .and_then(|index| u8::try_from(index).ok())
            .map(Country)
            .ok_or_else(|| invalid(CountryCodeProblem::Unassigned))
    }

    /// The two-letter code, e.g. `"DE"`.
    pub fn code(&self) -> &'static str {
        self.row().0
    }

    /// Every assigned country, in code order.
    pub fn all() -> impl ExactSizeIterator<Item = Country> {
        // The table has 249 rows, so every index fits in a u8.
        (0..=u8::MAX).take(COUNTRIES.len()).map(Country)
    }

    /// The IANA name of the capital's zone.
    fn capital_zone(&self) -> &'static str {
        self.row().1
    }

    fn row(&self) -> (&'static str, &'static str) {
        // A `Country` is only built from an index into `COUNTRIES`, so the
        // fallback row is unreachable; it exists to avoid a panic path.
        COUNTRIES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or(("ZZ", "Etc/UTC"))
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Country").field(&self.code()).finish()
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A validated ISO 3166-2 subdivision code such as `US-CA`, stored inline so
/// that a [`Jurisdiction`] never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Subdivision {
    bytes: [u8; Subdivision::MAX_LEN],
    len: u8,
}

impl Subdivision {
    /// `CC-XXX`: two letters, a hyphen and at most three characters.
    const MAX_LEN: usize = 6;

    fn parse(country: Country, code: &str) -> Result<Subdivision, JurisdictionError> {
        let invalid = |reason| JurisdictionError::InvalidSubdivision {
            input: InputEcho::of(code, Self::MAX_LEN),
            reason,
        };
        let bytes = code.as_bytes();
        let well_formed = match bytes {
            [a, b, b'-', rest @ ..] => {
                a.is_ascii_uppercase()
                    && b.is_ascii_uppercase()
                    && (1..=3).contains(&rest.len())
                    && rest
                        .iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            }
            _ => false,
        };
        if !well_formed {
            return Err(invalid(SubdivisionCodeProblem::Malformed));
        }
        if !code.starts_with(country.code()) {
            return Err(invalid(SubdivisionCodeProblem::WrongCountry(country)));
        }
        let mut inline = [0; Self::MAX_LEN];
        for (slot, byte) in inline.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        Ok(Subdivision {
            bytes: inline,
            // Well-formedness bounds the length to 4..=6.
            len: u8::try_from(bytes.len()).unwrap_or(0),
        })
    }

    fn as_str(&self) -> &str {
        // Only ASCII from a validated `&str` is stored, so this cannot fail;
        // the empty fallback merely avoids a panic path.
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }
}

impl fmt::Debug for Subdivision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The data subject's jurisdiction: a country and optionally a subdivision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jurisdiction {
    country: Country,
    subdivision: Option<Subdivision>,
}

impl Jurisdiction {
    /// Parses a country code and a subdivision code, where an empty
    /// subdivision means "the whole country" (as proto3 strings default to
    /// empty).
    ///
    /// Subdivisions are checked for shape and prefix only; the full ISO
    /// 3166-2 list is not embedded because nothing here depends on it beyond
    /// the few codes in the regime and zone tables.
    pub fn parse(country: &str, subdivision: &str) -> Result<Self, JurisdictionError> {
        let country = Country::parse(country)?;
        let subdivision = if subdivision.is_empty() {
            None
        } else {
            Some(Subdivision::parse(country, subdivision)?)
        };
        Ok(Self {
            country,
            subdivision,
        })
    }

    pub fn country(&self) -> Country {
        self.country
    }

    pub fn subdivision(&self) -> Option<&str> {
        self.subdivision.as_ref().map(Subdivision::as_str)
    }

    /// The regime governing the request, decided by the `REGIME_TABLE` rows.
    pub fn regime(&self) -> Regime {
        let code = self.country.code();
        let subdivision = self.subdivision();
        REGIME_TABLE
            .iter()
            .find(|(country, required, _)| {
                *country == code && required.is_none_or(|wanted| subdivision == Some(wanted))
            })
            .map_or(DEFAULT_REGIME, |(_, _, regime)| *regime)
    }

    /// The IANA zone in which this jurisdiction's calendar days are counted.
    pub fn time_zone(&self) -> TimeZone {
        let name = self
            .subdivision()
            .and_then(|code| {
                SUBDIVISION_ZONES
                    .iter()
                    .find(|(subdivision, _)| *subdivision == code)
            })
            .map_or(self.country.capital_zone(), |(_, zone)| zone);
        // The tzdb is bundled into the binary and the test
        // `every_table_zone_resolves` proves each name above resolves, so the
        // UTC fallback is unreachable; it only avoids a panic path.
        TimeZone::get(name).unwrap_or(TimeZone::UTC)
    }

    /// The calendar date at instant `t` in this jurisdiction.
    pub fn local_date(&self, t: Timestamp) -> Date {
        self.time_zone().to_datetime(t).date()
    }

    /// Monday to Friday and not a national public holiday of the country.
    ///
    /// Regional holidays of the subdivision are deliberately ignored, see
    /// [`holidays`].
    pub fn is_working_day(&self, d: Date) -> bool {
        is_weekday(d) && !holidays::is_public_holiday(self.country, d)
    }
}

impl From<Country> for Jurisdiction {
    fn from(country: Country) -> Self {
        Self {
            country,
            subdivision: None,
        }
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subdivision() {
            Some(subdivision) => f.write_str(subdivision),
            None => f.write_str(self.country.code()),
        }
    }
}

/// Monday to Friday. Countries with another weekend (e.g. Friday–Saturday)
/// are still treated as Monday–Friday; see the module docs of `deadline`.
fn is_weekday(d: Date) -> bool {
    !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn jurisdiction(country: &str, subdivision: &str) -> Jurisdiction {
        Jurisdiction::parse(country, subdivision).expect("valid jurisdiction")
    }

    #[test]
    fn country_table_is_sorted_unique_and_well_formed() {
        assert_eq!(COUNTRIES.len(), 249);
        for pair in COUNTRIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, _) in COUNTRIES {
            assert!(code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()));
        }
    }

    #[test]
    fn every_table_zone_resolves() {
        for (code, zone) in COUNTRIES.iter().chain(SUBDIVISION_ZONES) {
            assert!(TimeZone::get(zone).is_ok(), "{code}: {zone}");
        }
    }

    #[test]
    fn every_country_round_trips() {
        assert_eq!(Country::all().len(), 249);
        for country in Country::all() {
            assert_eq!(Country::parse(country.code()), Ok(country));
        }
    }

    #[test]
    fn subdivision_zone_rows_are_well_formed_codes() {
        for (code, _) in SUBDIVISION_ZONES {
            let country = code.get(..2).expect("prefix");
            assert_eq!(jurisdiction(country, code).subdivision(), Some(*code));
        }
    }

    #[test]
    fn parses_assigned_codes() {
        for code in ["DE", "FR", "GB", "US", "BR", "AX", "ZW", "AD"] {
            assert_eq!(Country::parse(code).map(|c| c.code()), Ok(code));
        }
    }

    #[test]
    fn rejects_lower_case_with_a_message_about_case() {
        for code in ["de", "De", "dE"] {
            let err = Country::parse(code).expect_err("lower case");
            assert!(matches!(
                err,
                JurisdictionError::InvalidCountry {
                    reason: CountryCodeProblem::LowerCase,
                    ..
                }
            ));
            assert!(err.to_string().contains("upper-case"), "{err}");
        }
    }

    #[test]
    fn rejects_malformed_and_unassigned_codes() {
        for code in ["", "D", "DEU", "D1", "12", "ÄB", " DE", "DE "] {
            assert!(
                matches!(
                    Country::parse(code),
                    Err(JurisdictionError::InvalidCountry {
                        reason: CountryCodeProblem::NotTwoLetters,
                        ..
                    })
                ),
                "{code:?}"
            );
        }
        // UK is reserved, EU exceptionally reserved, XX user-assigned: none
        // is officially assigned.
        for code in ["XX", "UK", "EU", "AA", "ZZ", "QO"] {
            assert!(
                matches!(
                    Country::parse(code),
                    Err(JurisdictionError::InvalidCountry {
                        reason: CountryCodeProblem::Unassigned,
                        ..
                    })
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn error_messages_are_lower_case_unpunctuated_and_echo_only_short_codes() {
        let long = "x".repeat(100);
        let errors = [
            Country::parse("de").expect_err("lower"),
            Country::parse("XX").expect_err("unassigned"),
            Country::parse(&long).expect_err("long"),
            Jurisdiction::parse("US", "DE-BE").expect_err("prefix"),
            Jurisdiction::parse("US", &long).expect_err("long"),
            Jurisdiction::parse("US", "us-ca").expect_err("case"),
        ];
        for err in &errors {
            let message = err.to_string();
            let first = message.chars().next().expect("non-empty");
            assert!(first.is_lowercase(), "{message}");
            assert!(!message.ends_with(['.', '!', '?']), "{message}");
            assert!(!message.contains("xxxx"), "{message}");
        }
        assert_eq!(
            errors[0].to_string(),
            "invalid country code \"de\": country codes are upper-case \
             (ISO 3166-1 alpha-2), e.g. DE not de"
        );
        assert!(errors[3].to_string().contains("\"DE-BE\""));
        assert!(errors[3].to_string().contains("country code US"));
    }

    #[test]
    fn parses_subdivisions() {
        let ca = jurisdiction("US", "US-CA");
        assert_eq!(ca.country().code(), "US");
        assert_eq!(ca.subdivision(), Some("US-CA"));
        assert_eq!(jurisdiction("PT", "PT-20").subdivision(), Some("PT-20"));
        assert_eq!(jurisdiction("FR", "FR-75C").subdivision(), Some("FR-75C"));
        assert_eq!(jurisdiction("GB", "GB-X").subdivision(), Some("GB-X"));
        assert_eq!(jurisdiction("DE", "").subdivision(), None);
        assert_eq!(ca.to_string(), "US-CA");
        assert_eq!(jurisdiction("DE", "").to_string(), "DE");
    }

    #[test]
    fn rejects_bad_subdivisions() {
        for code in [
            "US", "US-", "US-CALI", "USCA", "US_CA", "us-ca", "US-ca", "US-C A", "-CA", "U-CA",
            "US--C",
        ] {
            assert!(
                matches!(
                    Jurisdiction::parse("US", code),
                    Err(JurisdictionError::InvalidSubdivision {
                        reason: SubdivisionCodeProblem::Malformed,
                        ..
                    })
                ),
                "{code:?}"
            );
        }
        assert!(matches!(
            Jurisdiction::parse("GB", "US-CA"),
            Err(JurisdictionError::InvalidSubdivision {
                reason: SubdivisionCodeProblem::WrongCountry(_),
                ..
            })
        ));
        // The country is validated first.
        assert!(matches!(
            Jurisdiction::parse("us", "US-CA"),
            Err(JurisdictionError::InvalidCountry { .. })
        ));
    }

    #[test]
    fn regimes() {
        let cases = [
            ("DE", "", Regime::Gdpr),
            ("FR", "FR-75C", Regime::Gdpr),
            ("GB", "", Regime::Gdpr),
            ("NO", "", Regime::Gdpr),
            ("US", "US-CA", Regime::Ccpa),
            ("US", "US-NY", Regime::Gdpr),
            ("US", "", Regime::Gdpr),
            ("BR", "", Regime::Lgpd),
            ("BR", "BR-SP", Regime::Lgpd),
            ("JP", "", Regime::Gdpr),
        ];
        for (country, subdivision, regime) in cases {
            assert_eq!(
                jurisdiction(country, subdivision).regime(),
                regime,
                "{country} {subdivision}"
            );
        }
        assert_eq!(Regime::Gdpr.as_str(), "GDPR");
        assert_eq!(Regime::Ccpa.as_str(), "CCPA");
        assert_eq!(Regime::Lgpd.as_str(), "LGPD");
    }

    #[test]
    fn regime_table_lists_eu_eea_and_uk() {
        let gdpr_rows = REGIME_TABLE
            .iter()
            .filter(|(_, _, regime)| *regime == Regime::Gdpr)
            .count();
        assert_eq!(gdpr_rows, 27 + 3 + 1);
        for (code, subdivision, _) in REGIME_TABLE {
            let country = Country::parse(code).expect("assigned");
            if let Some(subdivision) = subdivision {
                assert!(Jurisdiction::parse(country.code(), subdivision).is_ok());
            }
        }
    }

    #[test]
    fn time_zones() {
        let cases = [
            ("DE", "", "Europe/Berlin"),
            ("FR", "", "Europe/Paris"),
            ("PT", "", "Europe/Lisbon"),
            ("PT", "PT-20", "Atlantic/Azores"),
            ("ES", "", "Europe/Madrid"),
            ("ES", "ES-CN", "Atlantic/Canary"),
            ("GB", "", "Europe/London"),
            ("BR", "", "America/Sao_Paulo"),
            ("US", "", "America/New_York"),
            ("US", "US-CA", "America/Los_Angeles"),
            ("US", "US-TX", "America/Chicago"),
            ("US", "US-MA", "America/New_York"),
            ("AU", "", "Australia/Sydney"),
        ];
        for (country, subdivision, zone) in cases {
            let tz = jurisdiction(country, subdivision).time_zone();
            assert_eq!(
                tz.iana_name(),
                TimeZone::get(zone).expect("zone").iana_name(),
                "{country} {subdivision}"
            );
        }
    }

    #[test]
    fn local_date_uses_the_zone() {
        // 23:30 UTC on 31 January is already 1 February in Berlin but still
        // 31 January in New York.
        let t = date(2026, 1, 31)
            .at(23, 30, 0, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .expect("instant")
            .timestamp();
        assert_eq!(jurisdiction("DE", "").local_date(t), date(2026, 2, 1));
        assert_eq!(jurisdiction("US", "").local_date(t), date(2026, 1, 31));
    }

    #[test]
    fn working_days() {
        let de = jurisdiction("DE", "");
        assert!(de.is_working_day(date(2026, 4, 2))); // Maundy Thursday
        assert!(!de.is_working_day(date(2026, 4, 3))); // Good Friday
        assert!(!de.is_working_day(date(2026, 4, 4))); // Saturday
        assert!(!de.is_working_day(date(2026, 4, 5))); // Sunday
        assert!(!de.is_working_day(date(2026, 4, 6))); // Easter Monday
        assert!(de.is_working_day(date(2026, 4, 7)));
        // A country without a holiday table still has weekends.
        let jp = jurisdiction("JP", "");
        assert!(jp.is_working_day(date(2026, 1, 1)));
        assert!(!jp.is_working_day(date(2026, 1, 3)));
    }
}
