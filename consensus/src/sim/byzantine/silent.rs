//! A validator that never sends anything: it still runs, commits and answers nothing.

use super::{Behaviour, Ctx};
use crate::Effect;

pub struct Silent;

impl Behaviour for Silent {
    fn outgoing(&mut self, _ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        effects
            .into_iter()
            .filter(|e| !matches!(e, Effect::Send { .. } | Effect::Broadcast { .. }))
            .collect()
    }
}
