//! Federation use cases: codes of other gateways resolve to the peer they
//! are forwarded to, a document a peer forwards is taken like a SendStream
//! (verified against this gateway's own trust, written durably, then
//! answered with the signed receipt that is the custody receipt), and one
//! forwarder per peer hands its outbound queue to a [`PeerLink`].

use std::{sync::Arc, time::Duration};

use tokio::task::JoinSet;
use tokio_stream::Stream;

use super::{Gateway, GatewayError};
use crate::{
    envelope::{Address, EnvelopeError, GroupName, OrgCode, RawEnvelope},
    federation::{
        FederationConfig, ForwardError, Forwarded, GatewayId, Hop, Outbound, PeerConfig, PeerLink,
        Route, SignedHop, chain_tip, check_chain, check_hops, received_part,
    },
    pki::Fingerprint,
    queue::Leased,
    receipt::SignedReceipt,
    registry::Registry,
    routing::{self, Directory, Known, Recipient, RoutingError},
};

/// The registry, and beyond it the peers' routes.
struct Routed<'a> {
    registry: &'a Registry,
    routes: &'a [(GatewayId, Vec<Route>)],
}

impl Directory for Routed<'_> {
    fn agency(&self, code: &OrgCode) -> Option<Known> {
        self.registry.agency(code)
    }

    fn children(&self, parent: &OrgCode) -> Vec<(OrgCode, Known)> {
        self.registry.children(parent)
    }

    fn group(&self, name: &GroupName) -> Option<Vec<OrgCode>> {
        self.registry.group(name)
    }

    fn remote(&self, code: &OrgCode) -> Option<GatewayId> {
        crate::federation::route(code, self.routes).cloned()
    }
}

/// What a peer forwards, as it arrived (the api converts it).
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// The envelope: attachments with declared sizes, signatures with CMS.
    pub envelope: RawEnvelope,
    /// Each attachment's declared size, in order.
    pub sizes: Vec<u64>,
    /// The org codes this gateway is to reach.
    pub recipients: Vec<String>,
    /// The gateways the document went through, origin first, the
    /// forwarding peer last.
    pub route: Vec<String>,
    /// The signed hops so far, origin first, the forwarding peer's last.
    pub hops: Vec<SignedHop>,
    /// For a document that came as edXML at its origin: the header kept
    /// there (an edXML package without attachment content).
    pub edxml: Option<Vec<u8>>,
}

impl Gateway {
    /// Resolves `to` against the registry and, with federation, the peers'
    /// routes (local agencies always win).
    pub(super) fn resolve(&self, to: &[Address]) -> Result<Vec<Recipient>, RoutingError> {
        match &self.config.federation {
            Some(_) => routing::resolve(
                to,
                &Routed {
                    registry: &self.registry,
                    routes: &self.routes,
                },
            ),
            None => routing::resolve(to, &self.registry),
        }
    }

    /// The peer an agency of another gateway is reached through: `code` is
    /// not registered here and a route takes it to that peer.
    fn peer_for(&self, code: &OrgCode) -> Option<&GatewayId> {
        if self.registry.agency(code).is_some() {
            return None;
        }
        crate::federation::route(code, &self.routes)
    }

    /// Whether `code` is an agency of another gateway.
    pub(super) fn is_remote(&self, code: &OrgCode) -> bool {
        self.peer_for(code).is_some()
    }

    /// Where a status for `sender` waits: its own queue, or the outbound
    /// queue of the peer an agency of another gateway is reached through.
    pub(super) fn mailbox_of(&self, sender: &OrgCode) -> OrgCode {
        self.peer_for(sender)
            .map_or_else(|| sender.clone(), GatewayId::mailbox)
    }

    /// Takes a status report a peer hands back on a document this gateway
    /// forwarded to it: the reporter must be one of the document's
    /// recipients reached through that peer. Recorded and queued toward the
    /// sender like a local report.
    pub async fn accept_forwarded_status(
        &self,
        peer: &GatewayId,
        raw: super::RawStatus,
    ) -> Result<super::StatusReceipt, GatewayError> {
        self.federation().ok_or(GatewayError::NotFederated)?;
        let reporter = OrgCode::parse(&raw.reporter, "status.reporter")?;
        let report = self.status_from(raw, reporter)?;
        let message = self.existing_message(&report.sender, &report.message_id)?;
        let through_peer = message
            .recipients
            .iter()
            .any(|r| r.code == report.reporter && r.gateway().as_ref() == Some(peer));
        if !through_peer {
            return Err(EnvelopeError::invalid(
                "status.reporter",
                format!(
                    "{} is not a recipient of message {} of {} reached through {peer}",
                    report.reporter, report.message_id, report.sender
                ),
            )
            .into());
        }
        self.record_status(&message, report).await
    }

    /// Signs `hop` with the gateway's receipt key.
    fn sign_hop(&self, hop: Hop) -> Result<SignedHop, GatewayError> {
        let (key, certificate) = self.hop_key.as_ref().ok_or(GatewayError::NotFederated)?;
        let signature = crate::pki::sign_plain(key, &hop.canonical())?;
        Ok(SignedHop {
            hop,
            signature,
            certificate: certificate.clone(),
        })
    }

    /// A peer's hops must form an intact chain (each signature verifies
    /// with its certificate; whose certificates they are is for the reader
    /// of the trace to judge) ending with the peer's own hop to here.
    fn check_incoming_hops(
        &self,
        peer: &GatewayId,
        hops: &[SignedHop],
    ) -> Result<(), GatewayError> {
        let Some(last) = hops.last() else {
            return Ok(());
        };
        let here = self
            .federation()
            .map(|f| f.gateway_id.as_str())
            .unwrap_or_default();
        if &last.hop.gateway != peer || last.hop.to != here {
            return Err(EnvelopeError::invalid(
                "header.hops",
                format!("the last hop must be {peer}'s, to {here}"),
            )
            .into());
        }
        check_chain(hops, verify_hop_signature).map_err(|(index, why)| {
            EnvelopeError::invalid(format!("header.hops[{index}]"), why).into()
        })
    }

    /// The hops of a message as this gateway knows them, for its sender or
    /// recipients (the same check as [`Gateway::trace`]), with the message's
    /// sender and id.
    pub fn hops(
        &self,
        caller: &crate::registry::Agency,
        sender: &str,
        message_id: &str,
    ) -> Result<(OrgCode, crate::envelope::MessageId, Vec<SignedHop>), GatewayError> {
        let record = self.involved_message(caller, sender, message_id)?;
        let hops = self.queue.hops_of(&record.sender, &record.message_id)?;
        Ok((record.sender, record.message_id, hops))
    }

    /// The hops kept for a message, for a peer (Federation.Hops).
    pub fn hops_for_peer(
        &self,
        sender: &str,
        message_id: &str,
    ) -> Result<Vec<SignedHop>, GatewayError> {
        let sender = OrgCode::parse(sender, "sender")?;
        let message_id = crate::envelope::MessageId::parse(message_id, "message_id")?;
        Ok(self.queue.hops_of(&sender, &message_id)?)
    }

    /// Keeps a longer chain of a message's hops, learned from a peer.
    pub async fn learn_hops(
        &self,
        sender: &OrgCode,
        message_id: &crate::envelope::MessageId,
        hops: Vec<SignedHop>,
    ) -> Result<(), GatewayError> {
        Ok(self.queue.extend_hops(sender, message_id, hops).await?)
    }

    /// The federation settings, when this gateway has peers.
    pub fn federation(&self) -> Option<&FederationConfig> {
        self.config.federation.as_ref()
    }

    /// The peer presenting the certificate with this fingerprint.
    pub fn peer_by_certificate(&self, fingerprint: &Fingerprint) -> Option<&PeerConfig> {
        self.federation()?.peer_by_certificate(fingerprint)
    }

    /// Takes a document `peer` forwards: its route must end with `peer` and
    /// may not hold this gateway nor exceed `federation.max_hops`; its
    /// recipients must be agencies of this gateway or routed onward; its
    /// content arrives in `chunks` like a SendStream's. Answers with this
    /// gateway's signed receipt (the custody receipt) once durable; a
    /// document forwarded again is a duplicate, answered with the first
    /// receipt.
    pub async fn accept_forwarded<S>(
        self: &Arc<Self>,
        peer: &GatewayId,
        request: ForwardRequest,
        chunks: S,
    ) -> Result<SignedReceipt, GatewayError>
    where
        S: Stream<Item = Result<(String, Vec<u8>), GatewayError>> + Unpin + Send,
    {
        let federation = self.federation().ok_or(GatewayError::NotFederated)?;
        let route = request
            .route
            .iter()
            .enumerate()
            .map(|(index, id)| GatewayId::parse(id, &format!("header.route[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if route.last() != Some(peer) {
            return Err(EnvelopeError::invalid(
                "header.route",
                format!("the route must end with the forwarding gateway {peer}"),
            )
            .into());
        }
        check_hops(&route, &federation.gateway_id, federation.max_hops)?;
        // A kept edXML header must read as one, within this gateway's bounds.
        let edxml = request.edxml;
        if let Some(header) = &edxml {
            lienthong_edxml::read(
                header,
                &self.config.edxml.limits,
                &mut lienthong_edxml::Discard,
            )?;
        }
        let envelope = request
            .envelope
            .validate_streamed(&self.config.limits, &request.sizes)?;
        if request.recipients.is_empty() {
            return Err(EnvelopeError::invalid(
                "header.recipients",
                "a forwarded document names the recipients it is for",
            )
            .into());
        }
        let addresses = request
            .recipients
            .iter()
            .enumerate()
            .map(|(index, code)| {
                OrgCode::parse(code, &format!("header.recipients[{index}]")).map(Address::Agency)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (recipients, policy) = self.route_under_policy(&envelope, &addresses)?;
        // A recipient routed on to a gateway already on the route would
        // loop: refused here, one hop early.
        for recipient in &recipients {
            if let Some(next) = recipient.gateway().filter(|next| route.contains(next)) {
                return Err(crate::federation::HopError::WouldLoop {
                    code: recipient.code.to_string(),
                    next,
                    route: route
                        .iter()
                        .map(GatewayId::as_str)
                        .collect::<Vec<_>>()
                        .join(" → "),
                }
                .into());
            }
        }
        let mut hops = request.hops;
        self.check_incoming_hops(peer, &hops)?;
        let _room = self.staging_room_for(&request.sizes)?;
        let staged = self.stage_stream(&envelope, &request.sizes, chunks).await?;
        // Delivered here (to some recipients at least): this gateway's own
        // last hop closes the chain.
        let local: Vec<String> = recipients
            .iter()
            .filter(|r| r.gateway().is_none())
            .map(|r| r.code.to_string())
            .collect();
        if !local.is_empty() && !hops.is_empty() {
            let last = &hops[hops.len() - 1].hop;
            let hop = Hop {
                gateway: federation.gateway_id.clone(),
                from: peer.to_string(),
                to: local.join(","),
                received_at: self.clock.now_millis(),
                forwarded_at: 0,
                content_sha256: last.content_sha256,
                envelope_sha256: last.envelope_sha256,
                previous_sha256: chain_tip(&hops),
            };
            hops.push(self.sign_hop(hop)?);
        }
        let receipt = self
            .accept(
                envelope,
                staged,
                recipients,
                policy,
                super::send::Annex {
                    route: route.clone(),
                    hops,
                    edxml,
                    reports: Vec::new(),
                },
            )
            .await?;
        tracing::info!(
            peer = %peer,
            route = %route.iter().map(GatewayId::as_str).collect::<Vec<_>>().join(" → "),
            sender = %receipt.receipt.message.sender,
            message_id = %receipt.receipt.message.message_id,
            duplicate = receipt.receipt.duplicate,
            "forwarded document taken into custody"
        );
        Ok(receipt)
    }

    /// Starts one forwarder per peer: each leases its peer's outbound queue
    /// and hands documents to `link`; custody acknowledges, a refusal
    /// dead-letters with the peer's reason, anything else backs off.
    pub fn spawn_forwarders(
        self: &Arc<Self>,
        link: Arc<dyn PeerLink>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(federation) = self.federation() else {
            return Vec::new();
        };
        federation
            .peers
            .iter()
            .map(|peer| {
                let (this, link, peer) = (self.clone(), link.clone(), peer.id.clone());
                tokio::spawn(async move { this.forward_loop(peer, link).await })
            })
            .collect()
    }

    async fn forward_loop(self: Arc<Self>, peer: GatewayId, link: Arc<dyn PeerLink>) {
        let Some(federation) = self.federation() else {
            return;
        };
        let (limit, timeout) = (federation.max_in_flight, federation.forward_timeout);
        let mailbox = peer.mailbox();
        let stream = self.queue.open_stream();
        let mut wake = self.queue.subscribe(&mailbox);
        let mut shutdown = self.shutdown.clone();
        let mut running: JoinSet<()> = JoinSet::new();
        // Forwards in a row that did not reach the peer: the backoff of
        // the next one grows with them, not with the document's attempts.
        let failures = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tracing::info!(peer = %peer, "forwarder started");
        loop {
            wake.borrow_and_update();
            if *shutdown.borrow_and_update() {
                break;
            }
            let room = limit.saturating_sub(running.len());
            let batch = if room > 0 {
                match self.queue.lease_next(&mailbox, stream, room, false).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::error!(peer = %peer, %error, "leasing the outbound queue failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            } else {
                Default::default()
            };
            for leased in batch.leased {
                // The forward may outlast the queue's lease; it is bounded
                // by its own timeout instead.
                self.queue.extend_lease(
                    &mailbox,
                    &leased.delivery_id.to_string(),
                    timeout + Duration::from_secs(5),
                );
                let this = self.clone();
                let (link, peer, failures) = (link.clone(), peer.clone(), failures.clone());
                running.spawn(async move {
                    let delivery_id = leased.delivery_id.to_string();
                    let late = || {
                        Err(ForwardError::Unavailable(format!(
                            "no custody within federation.forward_timeout_seconds ({} s)",
                            timeout.as_secs()
                        )))
                    };
                    if let Some(report) = leased.status.clone() {
                        let call = link.forward_status(peer.clone(), report);
                        let result = tokio::time::timeout(timeout, call)
                            .await
                            .unwrap_or_else(|_| late());
                        this.settle_forward(&peer, &delivery_id, result, None, &failures)
                            .await;
                        return;
                    }
                    let message = leased.message.clone();
                    let (result, recipients) = match this.outbound(&peer, leased) {
                        Ok(outbound) => {
                            let recipients = outbound.recipients.clone();
                            let result = tokio::time::timeout(timeout, link.forward(outbound))
                                .await
                                .unwrap_or_else(|_| late());
                            (result, recipients)
                        }
                        Err(error) => (Err(ForwardError::Refused(error.to_string())), Vec::new()),
                    };
                    this.settle_forward(
                        &peer,
                        &delivery_id,
                        result,
                        Some((&message, &recipients)),
                        &failures,
                    )
                    .await;
                });
            }
            let until_wake = batch
                .next_wake
                .map(|at| {
                    let now = self.clock.now_millis();
                    Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                })
                .unwrap_or(Duration::from_secs(60))
                .max(Duration::from_millis(5));
            tokio::select! {
                _ = wake.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(until_wake) => {}
                _ = shutdown.changed() => {}
            }
        }
        running.abort_all();
        self.queue.close_stream(&mailbox, stream);
        tracing::info!(peer = %peer, "forwarder stopped");
    }

    /// What goes to `peer` for a leased entry of its outbound queue.
    fn outbound(&self, peer: &GatewayId, leased: Leased) -> Result<Outbound, GatewayError> {
        let federation = self.federation().ok_or(GatewayError::NotFederated)?;
        let message = leased.message;
        let recipients: Vec<OrgCode> = message
            .recipients
            .iter()
            .filter(|recipient| recipient.gateway().as_ref() == Some(peer))
            .map(|recipient| recipient.code.clone())
            .collect();
        if recipients.is_empty() {
            return Err(GatewayError::Internal(format!(
                "message {} of {} has no recipient routed to {peer}",
                message.message_id, message.sender
            )));
        }
        let mut route = self.queue.route_of(&message.sender, &message.message_id)?;
        route.push(federation.gateway_id.clone());
        // The chain as it reached this gateway (not its own "delivered"
        // hop, nor a branch learned from another peer's custody), then its
        // hop to `peer`.
        let kept = self.queue.hops_of(&message.sender, &message.message_id)?;
        let mut hops = received_part(&kept, &federation.gateway_id).to_vec();
        let hop = Hop {
            gateway: federation.gateway_id.clone(),
            from: hops.last().map_or_else(
                || message.sender.to_string(),
                |last| last.hop.gateway.to_string(),
            ),
            to: peer.to_string(),
            received_at: message.accepted_at,
            forwarded_at: self.clock.now_millis(),
            content_sha256: content_sha256(&message),
            envelope_sha256: message.content_digest.0,
            previous_sha256: chain_tip(&hops),
        };
        hops.push(self.sign_hop(hop)?);
        let edxml = self.queue.edxml_of(&message.sender, &message.message_id)?;
        Ok(Outbound {
            peer: peer.clone(),
            message,
            recipients,
            route,
            hops,
            blobs: self.store.blobs().clone(),
            edxml,
        })
    }

    /// Ends a forward: custody acknowledges; a refusal for good goes to the
    /// dead letters, and for a document, a status 02 (refused) with the
    /// peer's reason goes back toward its sender for each recipient it did
    /// not reach; anything else backs off.
    async fn settle_forward(
        &self,
        peer: &GatewayId,
        delivery_id: &str,
        result: Result<Forwarded, ForwardError>,
        document: Option<(&crate::messages::MessageRecord, &[OrgCode])>,
        failures: &std::sync::atomic::AtomicU32,
    ) {
        use std::sync::atomic::Ordering;
        if !matches!(result, Err(ForwardError::Unavailable(_))) {
            failures.store(0, Ordering::Relaxed);
        }
        let mailbox = peer.mailbox();
        let settled = match &result {
            Ok(forwarded) => {
                tracing::info!(
                    peer = %peer,
                    delivery_id,
                    duplicate = forwarded.duplicate,
                    "custody received"
                );
                if let Some((message, _)) = document
                    && let Err(error) = self
                        .queue
                        .extend_hops(&message.sender, &message.message_id, forwarded.hops.clone())
                        .await
                {
                    tracing::warn!(peer = %peer, delivery_id, %error, "keeping the custody hops failed");
                }
                self.queue.ack(&mailbox, delivery_id).await
            }
            Err(ForwardError::Refused(reason)) => {
                tracing::warn!(peer = %peer, delivery_id, %reason, "refused by the peer; dead-lettered");
                let reason = format!("refused by {peer}: {reason}");
                let buried = self.queue.dead_letter(&mailbox, delivery_id, &reason).await;
                if buried.is_ok()
                    && let Some((message, recipients)) = document
                {
                    self.refusal_back(message, recipients, &reason).await;
                }
                buried
            }
            Err(ForwardError::Unavailable(reason)) => {
                let failed = failures.fetch_add(1, Ordering::Relaxed) + 1;
                let delay = self.queue.backoff(failed);
                tracing::warn!(
                    peer = %peer, delivery_id, %reason, retry_in_ms = delay.as_millis() as u64,
                    "forward failed; backing off"
                );
                self.queue
                    .nack_unreached(&mailbox, delivery_id, delay, reason)
                    .await
            }
        };
        if let Err(error) = settled {
            tracing::error!(peer = %peer, delivery_id, %error, "settling a forward failed");
        }
    }

    /// Tells the sender of a document a peer refused, through the statuses
    /// it receives: 02 (refused) by each recipient the document did not
    /// reach, with the reason.
    async fn refusal_back(
        &self,
        message: &crate::messages::MessageRecord,
        recipients: &[OrgCode],
        reason: &str,
    ) {
        let gateway = self
            .federation()
            .map(|f| f.gateway_id.to_string())
            .unwrap_or_default();
        for recipient in recipients {
            let report = crate::status::StatusReport {
                sender: message.sender.clone(),
                message_id: message.message_id.clone(),
                reporter: recipient.clone(),
                code: crate::status::StatusCode::Refused,
                description: reason.chars().take(500).collect(),
                staff: crate::status::Staff {
                    department: gateway.clone(),
                    ..Default::default()
                },
                at: self.clock.now_millis(),
            };
            if let Err(error) = self.record_status(message, report).await {
                tracing::error!(
                    sender = %message.sender, message_id = %message.message_id,
                    recipient = %recipient, %error,
                    "could not send the refusal back to the sender"
                );
            }
        }
    }
}

/// SHA-256 over the attachments' SHA-256s, in order.
fn content_sha256(message: &crate::messages::MessageRecord) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for attachment in &message.attachments {
        digest.update(attachment.sha256.0);
    }
    digest.finalize().into()
}

/// A hop's signature verifies with the certificate it carries.
pub fn verify_hop_signature(signed: &SignedHop) -> Result<(), String> {
    crate::pki::verify_plain(
        &signed.hop.canonical(),
        &signed.signature,
        &signed.certificate,
    )
    .map_err(|error| format!("its signature does not verify: {error}"))
}
