//! Which way a call goes (inbound phone, outbound phone, web), decided explicitly
//! from `call.type`, and how far along its life a status is.
//!
//! The TypeScript origin guessed the direction from which numbers were present
//! and mis-tracked calls; here an unknown or contradictory call is refused by
//! name ("Cannot determine call type") instead of being guessed.

use crate::payload::Call;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    Inbound,
    Outbound,
    Web,
}

impl CallDirection {
    /// From the value stored in `direction` columns (and used in settings).
    pub fn from_name(name: &str) -> Option<CallDirection> {
        match name {
            "inbound" => Some(CallDirection::Inbound),
            "outbound" => Some(CallDirection::Outbound),
            "web" => Some(CallDirection::Web),
            _ => None,
        }
    }

    /// The value stored in `direction` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::Outbound => "outbound",
            CallDirection::Web => "web",
        }
    }

    /// `call_logs.metadata.channel`: how the caller reached the assistant.
    pub fn channel(self) -> &'static str {
        match self {
            CallDirection::Inbound | CallDirection::Outbound => "phone",
            CallDirection::Web => "web",
        }
    }
}

/// Why the direction could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallTypeError {
    /// `call.type` is absent and nothing else settles it.
    #[error("call.type is missing")]
    Missing,
    /// A `call.type` this version does not know.
    #[error("call.type `{0}` is not known")]
    Unknown(String),
    /// `call.type` disagrees with the call's transport.
    #[error("call.type contradicts the call: {0}")]
    Contradictory(&'static str),
}

/// Web transports are Daily rooms (`transport.provider == "daily"`) or a
/// `webCallUrl`; phone transports name a telephony provider.
fn has_web_transport(call: &Call) -> bool {
    call.transport_provider.as_deref() == Some("daily") || call.web_call_url.is_some()
}

fn has_phone_transport(call: &Call) -> bool {
    call.phone_call_provider.is_some()
        || matches!(
            call.transport_provider.as_deref(),
            Some("twilio" | "vonage" | "telnyx" | "vapi")
        )
}

/// Decides the direction from `call.type`. Without a type only an unmistakable
/// web transport decides it: a phone call's direction cannot be read from
/// its numbers (both directions carry a customer and a phone number).
///
/// `aliases` are call types an operator has mapped to a direction
/// (`call_type_aliases`) after Vapi introduced one this version does not know;
/// the dead letters of its calls can then be replayed.
pub fn detect(
    call: &Call,
    aliases: &[(String, CallDirection)],
) -> Result<CallDirection, CallTypeError> {
    let direction = match call.call_type.as_deref() {
        Some("inboundPhoneCall") => CallDirection::Inbound,
        Some("outboundPhoneCall") => CallDirection::Outbound,
        Some("webCall" | "vapi.websocketCall") => CallDirection::Web,
        Some(other) => match aliases.iter().find(|(kind, _)| kind == other) {
            Some((_, direction)) => *direction,
            None => return Err(CallTypeError::Unknown(other.to_string())),
        },
        None if has_web_transport(call) && !has_phone_transport(call) => CallDirection::Web,
        None => return Err(CallTypeError::Missing),
    };
    match direction {
        CallDirection::Inbound | CallDirection::Outbound if has_web_transport(call) => Err(
            CallTypeError::Contradictory("a phone call with a web transport"),
        ),
        CallDirection::Web if has_phone_transport(call) => Err(CallTypeError::Contradictory(
            "a web call with a telephony provider",
        )),
        direction => Ok(direction),
    }
}

/// The statuses of a call's life, in order.
pub const STATUSES: [&str; 6] = [
    "scheduled",
    "queued",
    "ringing",
    "in-progress",
    "forwarding",
    "ended",
];

/// How far along its life a call status is (1 for `scheduled` .. 6 for
/// `ended`); statuses only move forward, so an out-of-order `ringing` never
/// overwrites `in-progress`. `None` for statuses that say nothing about
/// progress (`not-found`, `deletion-failed`, new ones).
pub fn status_rank(status: &str) -> Option<i16> {
    let index = STATUSES.iter().position(|s| *s == status)?;
    Some(index as i16 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_plain(call: &Call) -> Result<CallDirection, CallTypeError> {
        detect(call, &[])
    }

    #[test]
    fn an_alias_maps_a_new_type_to_a_direction() {
        let new_type = call(Some("vapi.sipCall"), None, None);
        assert_eq!(
            detect_plain(&new_type),
            Err(CallTypeError::Unknown("vapi.sipCall".into()))
        );
        let aliases = [("vapi.sipCall".to_string(), CallDirection::Inbound)];
        assert_eq!(detect(&new_type, &aliases), Ok(CallDirection::Inbound));
        // Known types are not overridden.
        let aliases = [("webCall".to_string(), CallDirection::Inbound)];
        assert_eq!(
            detect(&call(Some("webCall"), None, None), &aliases),
            Ok(CallDirection::Web)
        );
    }

    fn call(call_type: Option<&str>, transport: Option<&str>, provider: Option<&str>) -> Call {
        Call {
            id: "c".into(),
            call_type: call_type.map(str::to_string),
            transport_provider: transport.map(str::to_string),
            phone_call_provider: provider.map(str::to_string),
            ..Call::default()
        }
    }

    #[test]
    fn explicit_types() {
        let twilio = Some("twilio");
        assert_eq!(
            detect_plain(&call(Some("inboundPhoneCall"), twilio, twilio)),
            Ok(CallDirection::Inbound)
        );
        assert_eq!(
            detect_plain(&call(Some("outboundPhoneCall"), twilio, twilio)),
            Ok(CallDirection::Outbound)
        );
        assert_eq!(
            detect_plain(&call(Some("webCall"), Some("daily"), None)),
            Ok(CallDirection::Web)
        );
        assert_eq!(
            detect_plain(&call(Some("vapi.websocketCall"), None, None)),
            Ok(CallDirection::Web)
        );
        // Inbound calls that failed at the start carry no transport at all.
        assert_eq!(
            detect_plain(&call(Some("inboundPhoneCall"), None, None)),
            Ok(CallDirection::Inbound)
        );
    }

    #[test]
    fn unknown_missing_and_contradictory_are_refused() {
        assert_eq!(
            detect_plain(&call(Some("carrierPigeon"), None, None)),
            Err(CallTypeError::Unknown("carrierPigeon".into()))
        );
        assert_eq!(
            detect_plain(&call(None, Some("twilio"), Some("twilio"))),
            Err(CallTypeError::Missing)
        );
        assert_eq!(
            detect_plain(&call(None, None, None)),
            Err(CallTypeError::Missing)
        );
        assert!(matches!(
            detect_plain(&call(Some("inboundPhoneCall"), Some("daily"), None)),
            Err(CallTypeError::Contradictory(_))
        ));
        assert!(matches!(
            detect_plain(&call(Some("webCall"), Some("daily"), Some("twilio"))),
            Err(CallTypeError::Contradictory(_))
        ));
    }

    #[test]
    fn a_daily_transport_alone_is_a_web_call() {
        assert_eq!(
            detect_plain(&call(None, Some("daily"), None)),
            Ok(CallDirection::Web)
        );
    }

    #[test]
    fn statuses_are_ordered() {
        assert_eq!(status_rank("scheduled"), Some(1));
        assert_eq!(status_rank("ringing"), Some(3));
        assert_eq!(status_rank("in-progress"), Some(4));
        assert_eq!(status_rank("ended"), Some(6));
        let ranks: Vec<i16> = STATUSES.iter().map(|s| status_rank(s).unwrap()).collect();
        assert_eq!(ranks, [1, 2, 3, 4, 5, 6]);
        assert_eq!(status_rank("not-found"), None);
    }
}
