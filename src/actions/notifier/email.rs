//! Email through SMTP (lettre): a plain-text and an HTML part with the evidence and a link.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::DeliveryError;
use super::config::{NotifierConfig, TlsMode, read_secret};
use crate::actions::notice::Notice;

pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl EmailNotifier {
    pub fn new(cfg: &NotifierConfig) -> anyhow::Result<Self> {
        let host = cfg.smtp_host.clone().unwrap_or_default();
        let mut builder = match cfg.tls {
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)?,
        };
        if let Some(port) = cfg.smtp_port {
            builder = builder.port(port);
        }
        let password = read_secret(
            cfg.password_env.as_deref(),
            cfg.password_file.as_deref(),
            &format!("notifier {}", cfg.name),
        )?;
        if let (Some(user), Some(pass)) = (&cfg.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass));
        }
        let transport = builder.timeout(Some(cfg.timeout)).build();
        Ok(Self {
            transport,
            from: cfg.from.as_deref().unwrap_or_default().parse()?,
            to: cfg.to.iter().map(|t| t.parse()).collect::<Result<_, _>>()?,
        })
    }

    fn render(notice: &Notice) -> (String, String, String) {
        let subject = format!("[graywatch] {}", notice.headline());
        let (text, html) = match notice {
            Notice::Alert(a) => {
                let evidence = serde_json::to_string_pretty(&a.evidence).unwrap_or_default();
                let resolved = a
                    .resolved_at
                    .as_deref()
                    .map(|r| format!("Resolved: {r}\n"))
                    .unwrap_or_default();
                let text = format!(
                    "{}\n\nDependency: {}\nDetectors: {}\nSeverity: {}\nStarted: {}\n{resolved}\nDetails: {}\n\nEvidence:\n{evidence}\n",
                    a.summary,
                    a.subject_name(),
                    a.detector_list(),
                    a.severity,
                    a.started_at,
                    a.dashboard_url
                );
                let esc = |s: &str| {
                    s.replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                };
                let html = format!(
                    "<h2>{}</h2><p>{}</p><table><tr><th align=left>Dependency</th><td>{}</td></tr>\
                     <tr><th align=left>Detectors</th><td>{}</td></tr><tr><th align=left>Severity</th><td>{}</td></tr>\
                     <tr><th align=left>Started</th><td>{}</td></tr>{}</table>\
                     <p><a href=\"{}\">Open in graywatch</a></p><h3>Evidence</h3><pre>{}</pre>",
                    esc(&a.status.to_uppercase()),
                    esc(&a.summary),
                    esc(&a.subject_name()),
                    esc(&a.detector_list()),
                    esc(&a.severity),
                    esc(&a.started_at),
                    a.resolved_at
                        .as_deref()
                        .map(|r| format!(
                            "<tr><th align=left>Resolved</th><td>{}</td></tr>",
                            esc(r)
                        ))
                        .unwrap_or_default(),
                    esc(&a.dashboard_url),
                    esc(&evidence),
                );
                (text, html)
            }
            other => {
                let line = other.headline();
                (
                    format!("{line}\n"),
                    format!("<p>{}</p>", line.replace('<', "&lt;")),
                )
            }
        };
        (subject, text, html)
    }

    pub async fn deliver(&self, delivery_id: &str, notice: &Notice) -> Result<(), DeliveryError> {
        let (subject, text, html) = Self::render(notice);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{delivery_id}@graywatch>")));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            // SMTP 5xx is permanent; 4xx, connection and TLS problems are worth retrying.
            if e.is_permanent() {
                DeliveryError::Permanent(format!("SMTP: {e}"))
            } else {
                DeliveryError::Transient(format!("SMTP: {e}"))
            }
        })
    }
}
