//! A `get`'s answer, and the frame the socket server writes for it.
//!
//! Encoding the same token's reply again for every cached `get` was an
//! eighth of the daemon's instructions per request (issue 15). So the first
//! socket answer with a token already in memory encodes it once, the
//! token's slot keeps that frame, and every later answer with the same
//! token writes it as is. A token asked for once (fetched for the `get`
//! that wanted it) gets no frame: 10,000 of them would be 4 MB of frames
//! nobody reads again.

use std::sync::Arc;

use credcache_shared::codec;
use credcache_shared::protocol::{Response, TokenReply};
use zeroize::Zeroizing;

use super::slot::{CachedToken, Slot};

/// A token for a client.
pub struct Answer(Inner);

enum Inner {
    /// The frame its slot keeps says it all.
    Framed(Arc<Framed>),
    /// A reply to frame (and to keep for the next answers), or to send as
    /// any response if it carries a warning.
    Reply {
        reply: TokenReply,
        /// The slot the token is cached in.
        slot: Arc<Slot>,
        /// Whether the token was in memory, valid: no fetch, no wait.
        from_memory: bool,
    },
}

/// One token's reply as a frame, header and body, exactly as
/// [`codec::encode_frame`] writes it. It holds the token: the bytes are
/// zeroed when the last copy goes, as a `Secret`'s are.
pub struct Framed {
    /// What the frame says (never with a warning).
    reply: TokenReply,
    bytes: Zeroizing<Vec<u8>>,
}

impl Framed {
    /// Room for the whole frame from the start: a buffer that grew would
    /// leave copies of the token in the memory it gave back. Beyond the
    /// strings, a frame holds its header, the variant, four lengths, two
    /// timestamps and the absent warning: 35 bytes at most.
    fn room(reply: &TokenReply) -> usize {
        64 + reply.token.expose().len() + reply.name.len() + reply.kind.len() + reply.env_var.len()
    }

    fn encode(reply: &TokenReply) -> Option<Self> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(Self::room(reply)));
        codec::encode_frame_into(&Response::Token(reply.clone()), &mut bytes).ok()?;
        Some(Self {
            reply: reply.clone(),
            bytes,
        })
    }

    /// Whether this is the frame of `token`: made from this very copy of
    /// it (not merely an equal token), with the same times.
    pub fn frames(&self, token: &CachedToken) -> bool {
        self.reply.token.is_copy_of(&token.token)
            && self.reply.expires_at == token.expires_at
            && self.reply.fetched_at == token.fetched_at
    }

    /// Whether writing this frame answers a `get` of credential `name`
    /// (of `kind`, its variable `env_var`) with `token`, there being no
    /// warning to add. A reload may have renamed the variable while the
    /// token stayed.
    pub fn answers(&self, name: &str, kind: &str, env_var: &str, token: &CachedToken) -> bool {
        // The strings are almost always the very ones the frame was made
        // from: compared by address first, by value only if not.
        let same = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
        self.frames(token)
            && same(&self.reply.name, name)
            && same(&self.reply.kind, kind)
            && same(&self.reply.env_var, env_var)
    }

    /// The frame.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Answer {
    /// An answer its slot's frame gives whole: no reply is put together.
    pub(super) fn framed(framed: Arc<Framed>) -> Self {
        Self(Inner::Framed(framed))
    }

    pub(super) fn reply(reply: TokenReply, slot: Arc<Slot>, from_memory: bool) -> Self {
        Self(Inner::Reply {
            reply,
            slot,
            from_memory,
        })
    }

    /// Whether the answer came from memory at once (no fetch, no wait).
    pub fn from_memory(&self) -> bool {
        match &self.0 {
            Inner::Framed(_) => true,
            Inner::Reply { from_memory, .. } => *from_memory,
        }
    }

    pub fn into_reply(self) -> TokenReply {
        match self.0 {
            Inner::Framed(framed) => framed.reply.clone(),
            Inner::Reply { reply, .. } => reply,
        }
    }

    /// The frame to write: the slot's, or a new one, which the slot keeps
    /// for the next `get`s. `Err` gives the reply back, to be encoded as
    /// any other response: it carries a warning, does not fit in a frame,
    /// or has just been fetched (a token is framed from its second
    /// answer on).
    pub fn into_frame(self) -> Result<Arc<Framed>, TokenReply> {
        let (reply, slot) = match self.0 {
            Inner::Framed(framed) => return Ok(framed),
            Inner::Reply {
                reply,
                slot,
                from_memory,
            } => {
                if !from_memory {
                    return Err(reply);
                }
                (reply, slot)
            }
        };
        if reply.warning.is_some() {
            return Err(reply);
        }
        let Some(framed) = Framed::encode(&reply) else {
            return Err(reply);
        };
        let framed = Arc::new(framed);
        slot.keep_frame(framed.clone());
        Ok(framed)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use chrono::DateTime;
    use credcache_shared::Secret;

    use super::*;

    fn cached(token: &str) -> CachedToken {
        CachedToken {
            token: Secret::new(token),
            fetched_at: DateTime::from_timestamp(1_000, 0).unwrap(),
            expires_at: DateTime::from_timestamp(4_600, 0).unwrap(),
            quota_project: None,
        }
    }

    fn reply(token: &CachedToken) -> TokenReply {
        TokenReply {
            name: "gke".into(),
            kind: Cow::Borrowed("gke"),
            token: token.token.clone(),
            expires_at: token.expires_at,
            fetched_at: token.fetched_at,
            env_var: "GKE_TOKEN".into(),
            warning: None,
        }
    }

    /// What `Engine::get_in_force` does with a reply of the slot's token.
    fn answer(slot: &Arc<Slot>, reply: TokenReply) -> Answer {
        let hit = slot
            .ask(
                reply.fetched_at,
                std::time::Duration::ZERO,
                reply.fetched_at,
                true,
            )
            .0
            .unwrap();
        match hit.framed {
            Some(framed)
                if reply.warning.is_none()
                    && framed.answers(&reply.name, &reply.kind, &reply.env_var, &hit.token) =>
            {
                Answer::framed(framed)
            }
            _ => Answer::reply(reply, slot.clone(), true),
        }
    }

    #[test]
    fn the_first_answer_is_framed_as_any_response_and_kept_for_the_next() {
        let token = cached("ya29.a-token");
        let slot = Arc::new(Slot::with_token(token.clone()));
        let first = answer(&slot, reply(&token)).into_frame().ok().unwrap();
        let plain = codec::encode_frame(&Response::Token(reply(&token))).unwrap();
        assert_eq!(first.bytes(), plain);
        // The next answer is the kept frame, with no reply put together.
        let next = answer(&slot, reply(&token));
        assert!(next.from_memory());
        assert!(matches!(&next.0, Inner::Framed(f) if Arc::ptr_eq(f, &first)));
        assert_eq!(next.into_reply(), reply(&token));
    }

    #[test]
    fn a_token_just_fetched_is_answered_without_a_frame_and_framed_the_next_time() {
        let token = cached("ya29.a-token");
        let slot = Arc::new(Slot::with_token(token.clone()));
        // The `get` that fetched it: sent as any response, nothing kept.
        let fetched = Answer::reply(reply(&token), slot.clone(), false);
        assert_eq!(fetched.into_frame().err(), Some(reply(&token)));
        let next = answer(&slot, reply(&token));
        assert!(matches!(&next.0, Inner::Reply { .. }));
        // The next one, from memory, is framed and kept.
        let kept = next.into_frame().ok().unwrap();
        let again = answer(&slot, reply(&token));
        assert!(matches!(&again.0, Inner::Framed(f) if Arc::ptr_eq(f, &kept)));
    }

    #[test]
    fn a_frame_is_encoded_without_growing_its_buffer() {
        for len in [0, 1, 127, 128, 1_500, 70_000] {
            let token = cached(&"x".repeat(len));
            let mut reply = reply(&token);
            reply.name = "n".repeat(len / 7).into();
            reply.env_var = "V".repeat(len / 3).into();
            reply.expires_at = DateTime::<chrono::Utc>::MAX_UTC;
            let framed = Framed::encode(&reply).unwrap();
            let plain = codec::encode_frame(&Response::Token(reply.clone())).unwrap();
            assert_eq!(framed.bytes(), plain);
            assert_eq!(framed.bytes.capacity(), Framed::room(&reply), "{len}");
        }
    }

    #[test]
    fn a_kept_frame_answers_only_the_reply_it_says() {
        let token = cached("ya29.a-token");
        let slot = Arc::new(Slot::with_token(token.clone()));
        let kept = answer(&slot, reply(&token)).into_frame().ok().unwrap();

        // A warning is never in a kept frame.
        let mut warned = reply(&token);
        warned.warning = Some("the config file is invalid".into());
        assert_eq!(
            answer(&slot, warned.clone()).into_frame().err(),
            Some(warned)
        );

        // A reload renamed the variable: a new frame, kept instead.
        let mut renamed = reply(&token);
        renamed.env_var = "OTHER".into();
        let new = answer(&slot, renamed.clone()).into_frame().ok().unwrap();
        assert!(!Arc::ptr_eq(&kept, &new));
        let plain = codec::encode_frame(&Response::Token(renamed.clone())).unwrap();
        assert_eq!(new.bytes(), plain);
        let again = answer(&slot, renamed).into_frame().ok().unwrap();
        assert!(Arc::ptr_eq(&new, &again));
    }

    #[test]
    fn a_frame_is_never_kept_for_a_token_the_slot_no_longer_holds() {
        let old = cached("ya29.old");
        let slot = Arc::new(Slot::with_token(old.clone()));
        let stale = answer(&slot, reply(&old));
        // The token is replaced while the answer is on its way.
        let new = cached("ya29.new");
        slot.lock().set_token(Some(new.clone()));
        let framed = stale.into_frame().ok().unwrap();
        assert!(framed.frames(&old));
        assert!(slot.lock().framed.is_none());

        // An equal token fetched anew is another copy: not framed by the old.
        let equal = cached("ya29.new");
        let framed = answer(&slot, reply(&new)).into_frame().ok().unwrap();
        assert!(framed.frames(&new));
        assert!(!framed.frames(&equal));
        slot.lock().set_token(Some(equal));
        assert!(slot.lock().framed.is_none());
    }
}
