//! Audit: forward everything, record nothing; every call is still analyzed, checked (request
//! and response) and journaled.

use super::forward;
use crate::analyze::Analyzed;
use crate::exchange::{Answer, Exchange, Refusal};
use crate::upstream::{Upstream, UpstreamResponse};
use bytes::Bytes;

pub struct Audit {
    upstream: Upstream,
}

impl Audit {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub async fn answer(
        &self,
        body: Bytes,
        analyzed: Analyzed<'_>,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let response = forward(&self.upstream, body, &analyzed.classified, ex).await?;
        Ok(self.keep(response, ex))
    }

    /// The upstream's answer passed on, its links pointing at the address the client used.
    pub fn keep(&self, mut response: UpstreamResponse, ex: &Exchange<'_>) -> Answer {
        super::links_to_client(&self.upstream, &mut response, ex);
        Answer::forwarded(response)
    }
}
