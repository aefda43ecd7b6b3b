//! `POST /admin/replay`: re-drives pending dead letters through the same path
//! as a live delivery (verification aside: they were verified on arrival),
//! after moving the letters parked in the key-value store (while the database
//! was down, `crate::parked`) into the table. Idempotent: an event that
//! already succeeded is a duplicate and changes nothing.

use crate::db::{DeadLetter, PendingLetter};
use crate::effects::Effects;
use crate::event_key;
use crate::http::Response;
use crate::log::{Level, LogLine};
use crate::parked;
use crate::tenant;
use crate::webhook::{self, Context, Mode, Outcome};
use serde_json::json;

/// Re-drives up to `limit` pending dead letters; the report of the run.
pub async fn replay<E: Effects>(effects: &mut E, limit: i64) -> Response {
    // Dead letters parked in the key-value store while the database was down
    // move into the table first, so there is one queue to drain.
    let now = effects.now_ms();
    let parked = parked::drain(effects, now, async |effects: &mut E, event_key, body| {
        let letter = DeadLetter {
            event_key: event_key.to_string(),
            message_type: None,
            call_id: None,
            reason: Outcome::DatabaseUnavailable.as_str().into(),
            headers: json!({ "content-type": "application/json" }),
            body: body.to_vec(),
        };
        effects.upsert_dead_letter(&letter).await.is_ok()
    })
    .await;
    let (moved, still_parked) = match parked {
        Ok(drained) => (drained.moved, drained.still_parked),
        Err(error) => {
            effects.emit(
                &LogLine::new(Level::Warn, "Parked dead letters not read")
                    .field("store", "key_value")
                    .field("error", error.0),
            );
            (0, -1)
        }
    };
    let pending = match effects.pending_dead_letters(limit).await {
        Ok(pending) => pending,
        Err(_) => return Response::error(503, "database unavailable"),
    };
    let (mut succeeded, mut failed) = (0, 0);
    for letter in pending {
        // A tenant's letter replays as its tenant's webhook; one whose
        // tenant cannot be read now stays pending.
        let scope = match event_key::tenant_of(&letter.event_key) {
            "" => Ok(None),
            id => tenant::resolve(effects, id).await.map(Some),
        };
        let (ok, outcome) = match scope {
            Ok(scope) => {
                effects.set_tenant_scope(scope);
                replay_one(effects, &letter).await
            }
            Err(_) => (false, Outcome::DatabaseUnavailable),
        };
        if ok
            && effects
                .mark_replayed(letter.id, outcome.as_str())
                .await
                .is_ok()
        {
            succeeded += 1;
        } else {
            failed += 1;
        }
    }
    effects.set_tenant_scope(None);
    let remaining = effects.count_pending_dead_letters().await.unwrap_or(-1);
    Response::json(
        200,
        &json!({
            "moved_from_key_value": moved,
            "parked_in_key_value": still_parked,
            "replayed": succeeded,
            "failed": failed,
            "remaining": remaining,
        }),
    )
}

/// Replays one letter; whether it succeeded, and its outcome.
async fn replay_one<E: Effects>(effects: &mut E, letter: &PendingLetter) -> (bool, Outcome) {
    let mut context = Context::replay_of(letter.id);
    context.set_tenant(effects);
    let answer = webhook::process_verified(effects, &letter.body, &mut context, Mode::Replay).await;
    let ok = answer.response.status < 300;
    let outcome = answer.outcome;
    let (_, after) = webhook::finish(effects, answer, context).await;
    after.run(effects).await;
    (ok, outcome)
}
