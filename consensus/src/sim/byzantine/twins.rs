//! Twins (as in the Twins testing method): two replicas share one validator key and both run
//! the honest protocol, unaware of each other. To everyone else they are one validator that
//! proposes twice per round it leads and votes for whatever each twin saw first.

use super::{Behaviour, Ctx};
use crate::Effect;

/// Nothing to distort: the shared key is the fault. The simulator starts two of these.
pub struct Twin;

impl Behaviour for Twin {
    fn outgoing(&mut self, _ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        effects
    }
}
