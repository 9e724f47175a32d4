//! Outgoing mail (password resets, email verification): SMTP when `[smtp]` is configured; otherwise, for
//! development, one file per message in `accounts.mail_outbox`. With neither, nothing is
//! delivered and the log says so. A message body carries secrets (reset and verification
//! links), so it never goes to the log: logs are shipped and kept where a reset token
//! would be an account takeover.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

pub enum Mailer {
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    Outbox(PathBuf),
    /// No delivery: the log says a message was due and mail is not configured.
    Log,
}

#[derive(Debug, thiserror::Error)]
#[error("mail not sent: {0}")]
pub struct MailError(String);

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        if let Some(smtp) = &config.smtp {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)
                .map_err(|e| anyhow::anyhow!("smtp.url: {e}"))?
                .timeout(Some(std::time::Duration::from_secs(15)))
                .build();
            let from = smtp.from.parse().map_err(|e| anyhow::anyhow!("smtp.from: {e}"))?;
            return Ok(Mailer::Smtp { transport: Box::new(transport), from });
        }
        Ok(match &config.accounts.mail_outbox {
            Some(dir) => Mailer::Outbox(dir.clone()),
            None => Mailer::Log,
        })
    }

    /// Whether messages reach anyone (SMTP or the outbox), rather than only the log.
    pub fn delivers(&self) -> bool {
        !matches!(self, Mailer::Log)
    }

    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        match self {
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = to.parse().map_err(|e| MailError(format!("recipient: {e}")))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject)
                    .body(body.to_string())
                    .map_err(|e| MailError(e.to_string()))?;
                transport.send(message).await.map(|_| ()).map_err(|e| MailError(e.to_string()))
            }
            Mailer::Outbox(dir) => {
                let text = format!("To: {to}\nSubject: {subject}\n\n{body}");
                let name = format!("{}-{}.eml", crate::clock::now_secs(), uuid::Uuid::new_v4());
                tokio::fs::create_dir_all(dir).await.map_err(|e| MailError(e.to_string()))?;
                tokio::fs::write(dir.join(name), text).await.map_err(|e| MailError(e.to_string()))
            }
            Mailer::Log => {
                // Only that a message was due, never its body: it holds the token.
                tracing::warn!(
                    target: "gatehouse::mail",
                    %subject,
                    "a message was not sent: mail is not configured (set [smtp], or accounts.mail_outbox for development)"
                );
                Ok(())
            }
        }
    }
}
