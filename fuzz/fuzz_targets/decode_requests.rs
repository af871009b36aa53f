//! Any bytes as any request message of the three services: decoded, then
//! checked as the handler checks them (see `gdpr_intake_fuzz`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gdpr_intake_fuzz::check_request(data));
