//! The wire codec of every generated service and client (set in `build.rs`):
//! prost, except for what a message that is not valid protobuf becomes.
//!
//! tonic's prost codec answers an undecodable request with INTERNAL, the
//! code gRPC reserves for the server's own failures. Here it is the caller's
//! mistake and says what to fix: INVALID_ARGUMENT with ErrorInfo
//! `MALFORMED_MESSAGE` and, when prost names the field it failed on (a
//! string that is not UTF-8, a truncated nested message), a BadRequest
//! naming it (`subject.email`).
//!
//! Errors of the framing around the message (a compressed flag without
//! `grpc-encoding`, a frame cut short) are tonic's, raised before any codec
//! runs, and keep the INTERNAL the gRPC specification prescribes for them.
//! The generated clients share this codec, so a response this service's
//! own server could not have produced would also read as INVALID_ARGUMENT.

use std::collections::HashMap;
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

use crate::errors::ERROR_DOMAIN;

/// `ErrorInfo.reason` of a message that is not valid protobuf.
pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";

/// How prost starts the text of every decode error.
const PROST_PREFIX: &str = "failed to decode Protobuf message: ";

/// Encodes `T` and decodes `U` with prost; see the module documentation.
#[derive(Debug)]
pub struct IntakeCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for IntakeCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for IntakeCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = IntakeDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        IntakeDecoder(PhantomData)
    }
}

/// Decodes `U` with prost; a failure is [`malformed`].
#[derive(Debug)]
pub struct IntakeDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for IntakeDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| malformed(&e))
    }
}

/// The status of a message prost could not decode. prost's text carries
/// no byte of the message, only where and why decoding stopped, so it is
/// safe to pass on.
pub fn malformed(error: &prost::DecodeError) -> Status {
    let text = error.to_string();
    let (field, why) = failed_field(&text);
    let mut details = ErrorDetails::new();
    let message = match &field {
        Some(field) => {
            details
                .add_bad_request_violation(field.clone(), format!("is not valid protobuf: {why}"));
            format!("malformed request message: {field}: {why}")
        }
        None => format!("malformed request message: {why}"),
    };
    details.set_error_info(MALFORMED_MESSAGE, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The path of the field decoding failed on (`subject.email`) and prost's
/// reason, from the text of its error. prost keeps its (message, field)
/// stack private and prints it innermost first, each entry as
/// `Message.field: `, before the reason.
pub fn failed_field(text: &str) -> (Option<String>, &str) {
    let mut rest = text.strip_prefix(PROST_PREFIX).unwrap_or(text);
    let mut fields = Vec::new();
    while let Some((head, tail)) = rest.split_once(": ") {
        match head.split_once('.') {
            Some((message, field)) if is_identifier(message) && is_identifier(field) => {
                fields.push(field);
                rest = tail;
            }
            _ => break,
        }
    }
    fields.reverse();
    ((!fields.is_empty()).then(|| fields.join(".")), rest)
}

fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1;
    use bytes::BufMut;

    /// A length-delimited field `number` holding `bytes`.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, u8::try_from(bytes.len()).expect("short")];
        out.extend_from_slice(bytes);
        out
    }

    fn status_of<M: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> Status {
        malformed(&M::decode(bytes).expect_err("invalid protobuf"))
    }

    fn violations(s: &Status) -> Vec<String> {
        s.get_error_details()
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_string_that_is_not_utf8_is_named_by_its_path() {
        let top = status_of::<v1::SubmitDataSubjectRequestRequest>(&field(1, b"\xff\xfe"));
        assert_eq!(top.code(), Code::InvalidArgument);
        assert_eq!(violations(&top), vec!["request_id"]);
        let info = top.get_error_details().error_info().cloned().expect("info");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (MALFORMED_MESSAGE, ERROR_DOMAIN)
        );

        let nested = status_of::<v1::SubmitDataSubjectRequestRequest>(&field(
            3,
            &field(2, b"ada\xc3@example.org"),
        ));
        assert_eq!(violations(&nested), vec!["subject.email"]);
        assert!(
            !nested.message().contains("ada"),
            "the value is never repeated: {}",
            nested.message()
        );
    }

    #[test]
    fn a_message_broken_before_any_field_has_no_field_violation() {
        // Field number 0 does not exist in protobuf.
        let s = status_of::<v1::GetDataSubjectRequestRequest>(&[0x02, 0x00]);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(violations(&s).is_empty());
        assert!(s.get_error_details().error_info().is_some());
        let mut truncated = Vec::new();
        truncated.put_u8((1 << 3) | 2);
        truncated.put_u8(9);
        truncated.put_slice(b"abc");
        let s = status_of::<v1::GetDataSubjectRequestRequest>(&truncated);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    }

    #[test]
    fn the_field_path_comes_from_prosts_stack() {
        assert_eq!(
            failed_field(
                "failed to decode Protobuf message: Subject.email: \
                 SubmitDataSubjectRequestRequest.subject: invalid string value: data is not UTF-8 encoded"
            ),
            (
                Some("subject.email".to_owned()),
                "invalid string value: data is not UTF-8 encoded"
            )
        );
        assert_eq!(
            failed_field("failed to decode Protobuf message: invalid tag value: 0"),
            (None, "invalid tag value: 0")
        );
        assert_eq!(failed_field("buffer underflow"), (None, "buffer underflow"));
    }
}
