//! Resuming a room: every stored message after the client's last one, in
//! order, then live traffic, with nothing lost or doubled at the seam.

use std::sync::Arc;

use chat_protocol::{ErrorCode, ServerEvent};

use super::{refusal, Outbox};
use crate::rooms::{gap_before, ConnId, Resumed, RESUME_SLOTS};
use crate::server::AppState;

/// Messages read from the store at a time.
const PAGE: usize = 200;

/// Pages the backlog after `since` into the client's queue at the client's
/// pace (awaiting queue space), outside any lock, while the room goes on.
/// When what is left is small, the registry hands over the rest and makes the
/// connection a member in one step under its lock, through queue slots
/// reserved beforehand, so the live stream continues exactly where the
/// backlog ends and the hand-over can never overflow the queue.
pub(super) async fn resume(
    app: Arc<AppState>,
    id: ConnId,
    outbox: Outbox,
    room: String,
    since: u64,
) {
    let store = app.registry.store();
    let mut cursor = since;
    loop {
        let page = match store.after(&room, cursor, PAGE) {
            Ok(page) => page,
            Err(e) => {
                app.registry.abort_resume(id, &room);
                return fail(&outbox, refusal(e.into()));
            }
        };
        let full = page.len() == PAGE;
        if let Some(gap) = gap_before(&room, cursor, page.first()) {
            if !outbox.send(gap.to_json().into()).await {
                return;
            }
        }
        for message in page {
            cursor = message.seq;
            if !outbox
                .send(ServerEvent::NewMessage(message).to_json().into())
                .await
            {
                return;
            }
        }
        if full {
            continue;
        }
        let Some(mut slots) = outbox.reserve(RESUME_SLOTS).await else {
            return;
        };
        match app.registry.finish_resume(id, &room, cursor, &mut slots) {
            Ok(Resumed::Admitted) => return,
            // A burst arrived meanwhile: page on.
            Ok(Resumed::NotYet) => {}
            Err(e) => {
                drop(slots);
                app.registry.abort_resume(id, &room);
                return fail(&outbox, refusal(e));
            }
        }
    }
}

fn fail(outbox: &Outbox, (code, message): (ErrorCode, String)) {
    outbox.deliver(&ServerEvent::Error { code, message }.to_json().into());
}
