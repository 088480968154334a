//! Proxy, batches: a `$batch` runs through the pipeline item by item (see `batch`).
//!
//! Each item becomes a request of its own (the batch's headers overlaid by the item's, the
//! batch's extensions, so forward mode's destination and the client's origin carry over) and
//! an exchange of its own, journaled with `batch: {batch, item}`. Then, by mode:
//!
//! - replay answers every item as it would answer the call directly (memo, index, miss);
//! - record, auto and audit analyze every item, answer locally what they can (a rejection,
//!   a failed dependency, auto's recordings), forward the rest as one batch (only those
//!   items, `dependsOn` trimmed to them), and keep each item's answer as the direct call's
//!   would be kept.
//!
//! An item whose dependency failed is answered 424 without running, as Graph does; the answer
//! lists every item in the client's order.

use super::Proxy;
use crate::analyze::Analyzed;
use crate::backend::{self, Backend};
use crate::batch::answer::{self, ItemAnswer};
use crate::batch::{self, Batch, Item};
use crate::check::{self, Code};
use crate::classify;
use crate::exchange::{Answer, BatchRef, Exchange, Refusal};
use crate::outcome::Outcome;
use crate::upstream::UpstreamResponse;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// An item waiting for the upstream's answer.
struct Pending<'p, 'b> {
    index: usize,
    ex: Exchange<'p>,
    analyzed: Analyzed<'b>,
    /// Auto: the occurrence taken for it.
    taken: Option<u32>,
}

/// What became of an item before anything is forwarded.
enum Local<'b> {
    Answered(Result<Answer, Refusal>),
    /// To forward, analyzed (with the occurrence auto took for it).
    Forward(Analyzed<'b>, Option<u32>),
}

impl Proxy {
    /// Answers a batch graph-vcr can unpack.
    pub(super) async fn batch(
        &self,
        batch: Batch,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let number = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        ex.batch = Some(BatchRef {
            batch: number,
            item: None,
        });
        ex.action = Some(Arc::from("$batch"));
        ex.deviations
            .to_mut()
            .extend(batch.deviations.iter().cloned());
        self.reject_on_error(ex)?;
        let parts: Vec<Parts> = batch
            .items
            .iter()
            .map(|i| item_parts(i, ex.parts))
            .collect();
        let mut answers: Vec<Option<ItemAnswer>> = batch.items.iter().map(|_| None).collect();
        let mut pending: Vec<Pending<'_, '_>> = Vec::new();
        let mut item_codes: Vec<String> = Vec::new();
        for i in batch::run_order(&batch.items) {
            let item = &batch.items[i];
            let mut item_ex = self.item_exchange(&parts[i], item, number, ex);
            let forwarded_dependency = item.depends_on.iter().any(|d| {
                pending
                    .iter()
                    .any(|p| batch.items[p.index].id.eq_ignore_ascii_case(d))
            });
            let result = match failed_dependency(item, &batch.items, &answers) {
                Some(dependency) => Err(Refusal::new(
                    Outcome::FailedDependency,
                    ItemAnswer::failed_dependency(&item.id, dependency),
                )),
                None => match self.local(item, forwarded_dependency, &mut item_ex).await {
                    Local::Answered(result) => result,
                    Local::Forward(analyzed, taken) => {
                        pending.push(Pending {
                            index: i,
                            ex: item_ex,
                            analyzed,
                            taken,
                        });
                        continue;
                    }
                },
            };
            let answer = self.settle_item(item_ex, item, result, &mut item_codes);
            answers[i] = Some(answer.await);
        }
        if !pending.is_empty()
            && let Some(whole) = self
                .forward_items(&batch, pending, &mut answers, &mut item_codes, ex)
                .await?
        {
            return Ok(whole);
        }
        let answers: Vec<ItemAnswer> = answers.into_iter().flatten().collect();
        let mut response = answer::pack(&answers, "batch");
        let mut codes: Vec<String> = ex
            .deviations
            .iter()
            .map(|d| d.code.as_str().to_string())
            .collect();
        codes.dedup();
        codes.extend(item_codes);
        if let Ok(v) = HeaderValue::from_str(&codes.join(","))
            && !codes.is_empty()
        {
            response.headers_mut().insert(crate::headers::DEVIATIONS, v);
        }
        Ok(Answer::new(response, Outcome::Batch, None))
    }

    /// What graph-vcr can answer for an item itself: everything in replay; a refusal, or
    /// auto's recording (unless it depends on an item that is forwarded), in the others.
    async fn local<'b>(
        &self,
        item: &'b Item,
        forwarded_dependency: bool,
        ex: &mut Exchange<'_>,
    ) -> Local<'b> {
        if let Backend::Replay(_) = &self.backend {
            return Local::Answered(self.answer_body(item.body.clone(), ex).await);
        }
        let analyzed = match self.analyze(&item.body, ex) {
            Ok(a) => a,
            Err(refusal) => return Local::Answered(Err(refusal)),
        };
        if let Err(throttled) = self.throttle(ex).await {
            return Local::Answered(Err(throttled));
        }
        let recorded = match &self.backend {
            Backend::Record(r) if !forwarded_dependency => {
                r.replay_recorded(&analyzed.key, ex).await
            }
            _ => Ok(Err(None)),
        };
        match recorded {
            Err(refusal) => Local::Answered(Err(refusal)),
            Ok(Ok(replayed)) => Local::Answered(Ok(replayed)),
            Ok(Err(taken)) => Local::Forward(analyzed, taken),
        }
    }

    /// An item's exchange: in the batch's cassette, numbered with the batch.
    fn item_exchange<'p>(
        &self,
        parts: &'p Parts,
        item: &Item,
        number: u64,
        batch: &Exchange<'_>,
    ) -> Exchange<'p> {
        let mut ex = Exchange::new(parts, batch.cassette.clone());
        ex.batch = Some(BatchRef {
            batch: number,
            item: Some(item.id.clone()),
        });
        ex
    }

    /// Settles an item (journal, stats, run log, as any exchange) and makes its answer.
    async fn settle_item(
        &self,
        mut ex: Exchange<'_>,
        item: &Item,
        result: Result<Answer, Refusal>,
        item_codes: &mut Vec<String>,
    ) -> ItemAnswer {
        // graph-vcr's own answer to an item says which item it is.
        let result = result.map_err(|mut refusal| {
            refusal.error.message = format!("$batch item {:?}: {}", item.id, refusal.error.message);
            refusal
        });
        let mut response = ex.settle(result);
        if !ex.deviations.is_empty()
            && let Ok(v) = HeaderValue::from_str(&check::header_value(&ex.deviations))
        {
            response.headers_mut().insert(crate::headers::DEVIATIONS, v);
            item_codes.extend(
                check::header_value(&ex.deviations)
                    .split(',')
                    .map(|c| format!("{c} (item {})", item.id)),
            );
        }
        // The reports name the batch and item a call came in (the journal has `batch`).
        if ex.message.is_none()
            && let Some(b) = &ex.batch
        {
            ex.message = Some(format!("sent in $batch #{} as item {:?}", b.batch, item.id));
        }
        let status = response.status();
        self.finish(ex, status);
        let mut answer = ItemAnswer::of(&item.id, response).await;
        // Replay echoes the request's client-request-id, which an item shares with its batch;
        // Graph's item answers carry one only when the item sent its own.
        if !item.headers.contains_key(crate::headers::CLIENT_REQUEST_ID) {
            answer.headers.remove(crate::headers::CLIENT_REQUEST_ID);
        }
        answer
    }

    /// Forwards the pending items as one batch and keeps each one's answer. `Some`: the
    /// upstream refused the batch whole, and its answer is the batch's.
    async fn forward_items(
        &self,
        batch: &Batch,
        pending: Vec<Pending<'_, '_>>,
        answers: &mut [Option<ItemAnswer>],
        item_codes: &mut Vec<String>,
        ex: &mut Exchange<'_>,
    ) -> Result<Option<Answer>, Refusal> {
        let ids: Vec<&str> = pending
            .iter()
            .map(|p| batch.items[p.index].id.as_str())
            .collect();
        let body = batch::body_of(
            pending
                .iter()
                .map(|p| batch::forwarded_item(&batch.items[p.index], &ids))
                .collect(),
        );
        let Some(upstream) = self.backend.upstream() else {
            return Ok(None);
        };
        let envelope = classify::classify(ex.parts.uri.path(), ex.parts.uri.query());
        let result = backend::forward(upstream, body, &envelope, ex).await;
        let whole = match &result {
            Ok(response) => answer::unpack(response),
            Err(_) => None,
        };
        let Some(mut by_id) = whole else {
            // Nothing the items can be given one by one: each is journaled with why, and the
            // batch gets what the upstream (or graph-vcr, for an upstream failure) answered.
            return match result {
                Ok(mut response) => {
                    let note = format!(
                        "not recorded: the batch was answered {} as a whole",
                        response.status
                    );
                    for p in pending {
                        let mut item_ex = p.ex;
                        let as_whole =
                            Answer::new(http::Response::default(), Outcome::Forwarded, None)
                                .with_note(note.clone());
                        item_ex.settle(Ok(as_whole));
                        self.finish(item_ex, response.status);
                    }
                    backend::links_to_client(upstream, &mut response, ex);
                    Ok(Some(Answer::forwarded(response)))
                }
                Err(refusal) => {
                    for p in pending {
                        let mut item_ex = p.ex;
                        let again = Refusal::new(refusal.outcome, refusal.error.clone());
                        let status = refusal.error.status;
                        item_ex.settle(Err(again));
                        self.finish(item_ex, status);
                    }
                    Err(refusal)
                }
            };
        };
        for p in pending {
            let item = &batch.items[p.index];
            let position = by_id
                .iter()
                .position(|(id, _)| id.eq_ignore_ascii_case(&item.id));
            let mut item_ex = p.ex;
            let result = match position.map(|at| by_id.swap_remove(at).1) {
                Some(response) => {
                    self.keep_item(&p.analyzed, p.taken, response, &mut item_ex)
                        .await
                }
                None => Err(Refusal::new(
                    Outcome::UpstreamError,
                    crate::graph_error::GraphError::new(
                        StatusCode::BAD_GATEWAY,
                        "graphVcrBatchItemUnanswered",
                        format!(
                            "the upstream's batch answer has no response for item {:?}",
                            item.id
                        ),
                    ),
                )),
            };
            answers[p.index] = Some(self.settle_item(item_ex, item, result, item_codes).await);
        }
        Ok(None)
    }

    /// An item's answer from the upstream, kept as the direct call's would be.
    async fn keep_item(
        &self,
        analyzed: &Analyzed<'_>,
        taken: Option<u32>,
        response: UpstreamResponse,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        if analyzed.classified.assign_shaped {
            let (mut found, omitted) = check::check_response_counted(
                analyzed.classified.action,
                response.status,
                &response.headers,
                &response.body,
            );
            // Graph's batch answers carry no request-id per item.
            found.retain(|d| d.code != Code::ResponseMissingRequestId);
            ex.add_deviations(found, omitted);
        }
        match &self.backend {
            Backend::Record(r) => r.keep(analyzed, taken, response, ex).await,
            Backend::Audit(a) => Ok(a.keep(response, ex)),
            Backend::Replay(_) => Ok(Answer::forwarded(response)),
        }
    }
}

/// The request an item carries: its method and path, the batch's headers (credentials,
/// `client-request-id`, ...) overlaid by its own, and the batch's extensions.
fn item_parts(item: &Item, batch: &Parts) -> Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = item.method.clone();
    *request.uri_mut() = item.uri.parse().unwrap_or_default();
    let headers = request.headers_mut();
    for (name, value) in batch.headers.iter() {
        let framing = name == http::header::CONTENT_TYPE
            || name == http::header::CONTENT_LENGTH
            || name == http::header::CONTENT_ENCODING;
        if !framing {
            headers.append(name.clone(), value.clone());
        }
    }
    for name in item.headers.keys() {
        headers.remove(name);
    }
    for (name, value) in &item.headers {
        headers.append(name.clone(), value.clone());
    }
    let (mut parts, ()) = request.into_parts();
    parts.extensions = batch.extensions.clone();
    parts
}

/// The first dependency of `item` that was answered and failed (not 2xx), if any.
fn failed_dependency<'i>(
    item: &'i Item,
    items: &[Item],
    answers: &[Option<ItemAnswer>],
) -> Option<&'i str> {
    item.depends_on.iter().map(String::as_str).find(|d| {
        items
            .iter()
            .position(|o| o.id.eq_ignore_ascii_case(d))
            .and_then(|i| answers[i].as_ref())
            .is_some_and(|a| !a.status.is_success())
    })
}
