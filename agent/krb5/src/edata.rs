//! KRB-ERROR e-data. Its format depends on the KDC and the error:
//! - KERB-ERROR-DATA (MS-KILE 2.2.1), what Windows sends: data-type 3 carries a KERB-EXT-ERROR
//!   (2.2.2) with the NTSTATUS; data-type 2 asks for skew recovery. It has the shape of a single
//!   PA-DATA of type 3, which is why Wireshark shows it as "PA-PW-SALT".
//! - METHOD-DATA (SEQUENCE OF PA-DATA): PREAUTH_REQUIRED's list of methods with ETYPE-INFO2
//!   salts (RFC 4120 7.5.9), PA-FX-FAST / PA-FX-ERROR when FAST is in use (RFC 6113; the real
//!   error is then encrypted), and from Samba a PA-PW-SALT holding the KERB-EXT-ERROR.
//! - TYPED-DATA (RFC 4120 5.9.1).

pub use crate::view::Salt;
use crate::view::{parse_etype_info2, parse_kerb_error_data, parse_typed_data, PaList};
pub use kcd_names::EDataFormat;
use kcd_names::{NtStatus, PaDataType};

/// MS-KILE 2.2.1 data-type values.
pub const KERB_AP_ERR_TYPE_SKEW_RECOVERY: i32 = 2;
pub const KERB_ERR_TYPE_EXTENDED: i32 = 3;

/// KERB-EXT-ERROR ::= { status NTSTATUS, reserved UINT32, flags UINT32 }, little endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtError {
    pub status: NtStatus,
    pub reserved: u32,
    pub flags: u32,
}

impl ExtError {
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != 12 {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            status: NtStatus(word(0)),
            reserved: word(4),
            flags: word(8),
        })
    }

    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[0..4].copy_from_slice(&self.status.0.to_le_bytes());
        out[4..8].copy_from_slice(&self.reserved.to_le_bytes());
        out[8..12].copy_from_slice(&self.flags.to_le_bytes());
        out
    }
}

/// What e-data says, in the terms an administrator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EDataInfo<'a> {
    pub format: EDataFormat,
    /// PA-DATA types in METHOD-DATA, or data-types in TYPED-DATA.
    pub padata_types: Vec<i32>,
    pub ntstatus: Option<ExtError>,
    pub etype_info2: Vec<Salt<'a>>,
    /// KERB-ERROR-DATA's data-type when it is not an extended error.
    pub data_type: Option<i32>,
    /// PA-FX-FAST or PA-FX-ERROR with a value: the real error is inside FAST's encrypted
    /// KrbFastResponse and cannot be read on the wire.
    pub fast_armored: bool,
}

pub fn parse_e_data(e: &[u8]) -> EDataInfo<'_> {
    let mut info = EDataInfo {
        format: EDataFormat::Unknown,
        padata_types: Vec::new(),
        ntstatus: None,
        etype_info2: Vec::new(),
        data_type: None,
        fast_armored: false,
    };
    if let Some((data_type, value)) = parse_kerb_error_data(e) {
        info.format = EDataFormat::KerbErrorData;
        match (data_type, value.and_then(ExtError::parse)) {
            (KERB_ERR_TYPE_EXTENDED, Some(ext)) => info.ntstatus = Some(ext),
            (t, _) => info.data_type = Some(t),
        }
        return info;
    }
    let (list, problems) = PaList::parse(e);
    if problems.0.is_none() {
        info.format = EDataFormat::MethodData;
        for pa in list.iter() {
            info.padata_types.push(pa.padata_type);
            match PaDataType(pa.padata_type) {
                PaDataType::PA_ETYPE_INFO2 => {
                    info.etype_info2.extend(parse_etype_info2(pa.value));
                }
                // Samba (Heimdal KDC before 4.19, or MIT KDC) wraps KERB-EXT-ERROR as a PA-PW-SALT
                // inside METHOD-DATA. A real salt is text, so it will not have four zero octets
                // where the reserved word is, nor a severity in the status's top bits.
                PaDataType::PA_PW_SALT => {
                    if let Some(ext) = ExtError::parse(pa.value)
                        .filter(|x| x.reserved == 0 && x.status.0 >> 30 != 0)
                    {
                        info.ntstatus = Some(ext);
                    }
                }
                PaDataType::PA_FX_FAST | PaDataType::PA_FX_ERROR if !pa.value.is_empty() => {
                    info.fast_armored = true
                }
                _ => {}
            }
        }
        return info;
    }
    if let Some(types) = parse_typed_data(e) {
        info.format = EDataFormat::TypedData;
        info.padata_types = types;
    }
    info
}
