//! The DH groups of the legacy engine's DHE suites: none (`dh_bits: 0`), an operator's file
//! (`dh_params`), or a built-in fixed group of at most 1024 bits by default.

use openssl::bn::{BigNum, BigNumContext};
use openssl::dh::Dh;

use crate::config::{DhGroup, Profile};

/// The DH group a profile serves: none (`dh_bits: 0`), the operator's file (`dh_params`) or
/// the built-in fixed group.
pub(super) fn dh_for(
    profile: &Profile,
) -> Result<Option<Dh<openssl::pkey::Params>>, openssl::error::ErrorStack> {
    if profile.dh_bits == 0 {
        return Ok(None);
    }
    if let Some(own) = &profile.dh_params {
        return Dh::params_from_pem(&own.pem).map(Some);
    }
    dh_group(profile.dh_bits, profile.dh_group).map(Some)
}

/// Which DH group a profile's DHE suites use, in words (`check`, logs).
pub fn describe_dh(profile: &Profile) -> String {
    match (profile.dh_bits, &profile.dh_params, profile.dh_group) {
        (0, _, _) => "no DHE (dh_bits: 0)".to_string(),
        (_, Some(own), _) => format!(
            "DHE with the operator's {}-bit group from {} (dh_params)",
            own.bits,
            own.path.display()
        ),
        (2048, None, _) => "DHE with the fixed 2048-bit RFC 3526 group 14".to_string(),
        (bits, None, DhGroup::Rfc5114) => {
            format!("DHE with the fixed {bits}-bit RFC 5114 group (160-bit subgroup and exponents)")
        }
        (bits, None, DhGroup::Rfc2409) => {
            format!("DHE with the fixed {bits}-bit RFC 2409 Oakley group 2")
        }
    }
}

/// Check an operator's DH parameter file (PEM `DH PARAMETERS`, as `openssl dhparam` writes
/// it) and return the size of its prime in bits. The prime must be prime and the generator
/// inside (1, p-1); a safe prime is not required (`openssl dhparam -dsaparam` output is fine).
pub fn dh_params_bits(pem: &[u8]) -> Result<u32, String> {
    let dh = Dh::params_from_pem(pem).map_err(|_| {
        "no PEM 'DH PARAMETERS' block in it (make one with `openssl dhparam -out dh.pem 1024`)"
            .to_string()
    })?;
    let fail = |e: openssl::error::ErrorStack| format!("cannot check the group: {e}");
    let p = dh.prime_p();
    let g = dh.generator();
    let mut ctx = BigNumContext::new().map_err(fail)?;
    if !p.is_prime(0, &mut ctx).map_err(fail)? {
        return Err("its modulus p is not prime".to_string());
    }
    let one = BigNum::from_u32(1).map_err(fail)?;
    let mut p_minus_1 = BigNum::new().map_err(fail)?;
    p_minus_1.checked_sub(p, &one).map_err(fail)?;
    if *g <= *one || *g >= *p_minus_1 {
        return Err("its generator g is not between 1 and p-1".to_string());
    }
    u32::try_from(p.num_bits()).map_err(|_| "its modulus has no size".to_string())
}

/// The fixed DH group: for 1024 bits RFC 2409 Oakley group 2 (a safe prime, generator 2, the
/// group Apache 2.2-era servers gave these devices) or the RFC 5114 group with a 160-bit
/// subgroup (OpenSSL recognises it and uses 160-bit private exponents: cheaper DHE); for 2048
/// RFC 3526 group 14, for operators who know every device on the route copes (`check` warns).
fn dh_group(
    bits: u32,
    group: DhGroup,
) -> Result<Dh<openssl::pkey::Params>, openssl::error::ErrorStack> {
    match (bits, group) {
        (2048, _) => Dh::from_pqg(
            BigNum::get_rfc3526_prime_2048()?,
            None,
            BigNum::from_u32(2)?,
        ),
        (_, DhGroup::Rfc5114) => Dh::get_1024_160(),
        (_, DhGroup::Rfc2409) => Dh::from_pqg(
            BigNum::get_rfc2409_prime_1024()?,
            None,
            BigNum::from_u32(2)?,
        ),
    }
}
