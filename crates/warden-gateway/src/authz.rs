//! Cedar authorization. Principal `Warden::User` (roles as parents `Warden::Role` and as
//! the `roles` attribute, `team`, `clearance`), action = the endpoint, resource
//! `Warden::Model` (`classification`, `release`), context (`hour`, `weekday`,
//! `source_ip`, `mfa`, `auth`). Cedar is default deny: no `permit`, no access.

use crate::Error;
use crate::directory::Identity;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

/// The built-in schema (`warden policy check` validates against it unless the
/// configuration names another).
pub const DEFAULT_SCHEMA: &str = r#"
namespace Warden {
  entity Role;
  entity User in [Role] = {
    roles: Set<String>,
    team: String,
    clearance: Long,
  };
  entity Model = {
    classification: Long,
    release: String,
  };
  type Ctx = {
    hour: Long,
    weekday: Long,
    source_ip: ipaddr,
    mfa: Bool,
    auth: String,
  };
  action "chat", "completions", "embeddings", "models", "responses"
    appliesTo { principal: [User], resource: [Model], context: Ctx };
}
"#;

/// The attributes of a model as policies see them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelAttrs {
    /// Model name (entity id).
    pub name: String,
    /// Classification level.
    pub classification: i64,
    /// Release id.
    pub release: String,
}

/// The request context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestContext {
    /// Hour of day, UTC.
    pub hour: i64,
    /// Day of week, 0 = Monday, UTC.
    pub weekday: i64,
    /// Client address.
    pub source_ip: IpAddr,
    /// Whether MFA was asserted: only an OIDC token whose `amr` lists `mfa` sets it (an
    /// API key or a client certificate is one factor; policies that want the certificate
    /// test `context.auth == "mtls"`).
    pub mfa: bool,
    /// `key`, `jwt` or `mtls`.
    pub auth: &'static str,
}

impl RequestContext {
    /// Context at `unix_secs`.
    pub fn at(unix_secs: u64, source_ip: IpAddr, mfa: bool, auth: &'static str) -> Self {
        let days = unix_secs / 86_400;
        RequestContext {
            hour: ((unix_secs % 86_400) / 3600) as i64,
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            weekday: ((days + 3) % 7) as i64,
            source_ip,
            mfa,
            auth,
        }
    }
}

/// A decision and why.
#[derive(Debug, Clone)]
pub struct Explained {
    /// Allowed?
    pub allow: bool,
    /// Ids of the policies that determined the decision (empty: default deny).
    pub policies: Vec<String>,
    /// Evaluation errors (any error means the request is refused).
    pub errors: Vec<String>,
}

/// Policies and schema, ready to answer requests.
///
/// Building a Cedar request is far more work than evaluating the policies (entity
/// construction and schema conformance, context construction, request validation), and
/// the inputs repeat: the same identity asks for the same model from the same address
/// within the same hour. So each distinct (principal, action, resource, context) is
/// built and validated against the schema once, evaluated once, and kept in a bounded
/// cache. Every key field is an input of the request and Cedar evaluation is pure, so a
/// cached answer is exactly the one that would be computed again. Reloading policies
/// replaces the whole `Policies` and with it the cache.
#[derive(Debug)]
pub struct Policies {
    set: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
    types: Types,
    prepared: RwLock<HashMap<PrepKey, Arc<Prepared>>>,
}

/// Entity type names, parsed once.
#[derive(Debug)]
struct Types {
    user: EntityTypeName,
    role: EntityTypeName,
    model: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Types, String> {
        let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Types {
            user: t("Warden::User")?,
            role: t("Warden::Role")?,
            model: t("Warden::Model")?,
            action: t("Warden::Action")?,
        })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PrepKey {
    who: Identity,
    action: String,
    model: ModelAttrs,
    ctx: RequestContext,
}

/// A request validated against the schema, its entities, and (once evaluated) the
/// decision: Cedar evaluation is a pure function of the policies, the request and the
/// entities, all fixed for this entry.
#[derive(Debug)]
struct Prepared {
    request: Request,
    entities: Entities,
    decision: std::sync::OnceLock<Result<bool, String>>,
}

/// Most prepared requests kept (the cache is emptied when full).
const PREPARED_MAX: usize = 4096;

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// Parse a schema in Cedar schema syntax.
pub fn parse_schema(text: &str, path: &str) -> Result<Schema, Error> {
    Schema::from_cedarschema_str(text)
        .map(|(s, _warnings)| s)
        .map_err(|e| Error::Policy {
            path: path.to_owned(),
            cause: format!("schema: {e}"),
        })
}

impl Policies {
    /// Parse `policies` and validate them strictly against `schema`.
    pub fn new(policies: &str, policy_path: &str, schema: Schema) -> Result<Policies, Error> {
        let set = PolicySet::from_str(policies).map_err(|e| Error::Policy {
            path: policy_path.to_owned(),
            cause: format!("{e}: {}", render_diag(&e)),
        })?;
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let msgs: Vec<String> = result.validation_errors().map(|e| format!("{e}")).collect();
            return Err(Error::Policy {
                path: policy_path.to_owned(),
                cause: format!("does not validate against the schema: {}", msgs.join("; ")),
            });
        }
        Ok(Policies {
            set,
            schema,
            authorizer: Authorizer::new(),
            types: Types::new().map_err(|cause| Error::Policy {
                path: policy_path.to_owned(),
                cause,
            })?,
            prepared: RwLock::new(HashMap::new()),
        })
    }

    /// Load the policy file and the schema file (or the built-in schema).
    pub fn load(policy: &Path, schema: Option<&Path>) -> Result<Policies, Error> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|cause| Error::Read {
                path: p.display().to_string(),
                cause,
            })
        };
        let schema = match schema {
            Some(p) => parse_schema(&read(p)?, &p.display().to_string())?,
            None => parse_schema(DEFAULT_SCHEMA, "built-in schema")?,
        };
        Policies::new(&read(policy)?, &policy.display().to_string(), schema)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Whether the set is empty (everything denied).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The source text of a policy, for explanations.
    pub fn source(&self, id: &str) -> Option<String> {
        self.set
            .policies()
            .find(|p| p.id().to_string() == id || p.annotation("id") == Some(id))
            .map(|p| p.to_string())
    }

    /// Whether `who` may do `action` on `model` in `ctx` (the gateway's hot path: no
    /// explanation). `Err` carries evaluation errors; any error is a deny.
    pub fn allows(
        &self,
        who: &Identity,
        action: &str,
        model: &ModelAttrs,
        ctx: &RequestContext,
    ) -> Result<bool, String> {
        let p = self.prepare(who, action, model, ctx)?;
        p.decision
            .get_or_init(|| {
                let response = self
                    .authorizer
                    .is_authorized(&p.request, &self.set, &p.entities);
                let mut errors = response.diagnostics().errors().peekable();
                if errors.peek().is_some() {
                    return Err(errors.map(|e| e.to_string()).collect::<Vec<_>>().join("; "));
                }
                Ok(response.decision() == Decision::Allow)
            })
            .clone()
    }

    /// Decide `action` by `who` on `model` in `ctx`, with the policies that decided.
    /// Any error is a deny.
    pub fn decide(
        &self,
        who: &Identity,
        action: &str,
        model: &ModelAttrs,
        ctx: &RequestContext,
    ) -> Explained {
        let p = match self.prepare(who, action, model, ctx) {
            Ok(p) => p,
            Err(e) => {
                return Explained {
                    allow: false,
                    policies: Vec::new(),
                    errors: vec![e],
                };
            }
        };
        let response = self
            .authorizer
            .is_authorized(&p.request, &self.set, &p.entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        Explained {
            allow: response.decision() == Decision::Allow && errors.is_empty(),
            policies: response
                .diagnostics()
                .reason()
                .map(|id| {
                    self.set
                        .policy(id)
                        .and_then(|p| p.annotation("id").map(str::to_owned))
                        .unwrap_or_else(|| id.to_string())
                })
                .collect(),
            errors,
        }
    }

    /// The schema-validated request and entities for these inputs (cached).
    fn prepare(
        &self,
        who: &Identity,
        action: &str,
        model: &ModelAttrs,
        ctx: &RequestContext,
    ) -> Result<Arc<Prepared>, String> {
        let key = PrepKey {
            who: who.clone(),
            action: action.to_owned(),
            model: model.clone(),
            ctx: ctx.clone(),
        };
        if let Ok(c) = self.prepared.read()
            && let Some(p) = c.get(&key)
        {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(self.build(who, action, model, ctx)?);
        if let Ok(mut c) = self.prepared.write() {
            if c.len() >= PREPARED_MAX {
                c.clear();
            }
            c.insert(key, Arc::clone(&p));
        }
        Ok(p)
    }

    fn build(
        &self,
        who: &Identity,
        action: &str,
        model: &ModelAttrs,
        ctx: &RequestContext,
    ) -> Result<Prepared, String> {
        let t = &self.types;
        let principal = uid(&t.user, &who.name);
        let mut parents = HashSet::new();
        let mut entities = Vec::with_capacity(who.roles.len() + 2);
        for r in &who.roles {
            let ru = uid(&t.role, r);
            parents.insert(ru.clone());
            entities.push(Entity::new_no_attrs(ru, HashSet::new()));
        }
        let attrs: HashMap<String, RestrictedExpression> = [
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(
                    who.roles
                        .iter()
                        .map(|r| RestrictedExpression::new_string(r.clone())),
                ),
            ),
            (
                "team".to_owned(),
                RestrictedExpression::new_string(who.team.clone()),
            ),
            (
                "clearance".to_owned(),
                RestrictedExpression::new_long(who.clearance),
            ),
        ]
        .into_iter()
        .collect();
        entities.push(Entity::new(principal.clone(), attrs, parents).map_err(|e| e.to_string())?);
        let resource = uid(&t.model, &model.name);
        let mattrs: HashMap<String, RestrictedExpression> = [
            (
                "classification".to_owned(),
                RestrictedExpression::new_long(model.classification),
            ),
            (
                "release".to_owned(),
                RestrictedExpression::new_string(model.release.clone()),
            ),
        ]
        .into_iter()
        .collect();
        entities.push(
            Entity::new(resource.clone(), mattrs, HashSet::new()).map_err(|e| e.to_string())?,
        );
        let entities =
            Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())?;
        let context = Context::from_pairs([
            ("hour".to_owned(), RestrictedExpression::new_long(ctx.hour)),
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long(ctx.weekday),
            ),
            (
                "source_ip".to_owned(),
                RestrictedExpression::new_ip(ctx.source_ip.to_string()),
            ),
            ("mfa".to_owned(), RestrictedExpression::new_bool(ctx.mfa)),
            (
                "auth".to_owned(),
                RestrictedExpression::new_string(ctx.auth.to_owned()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let action = uid(&t.action, action);
        let request = Request::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| e.to_string())?;
        Ok(Prepared {
            request,
            entities,
            decision: std::sync::OnceLock::new(),
        })
    }
}

fn render_diag(e: &impl std::error::Error) -> String {
    let mut out = String::new();
    let mut src = e.source();
    while let Some(s) = src {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(text: &str) -> Policies {
        Policies::new(
            text,
            "test.cedar",
            parse_schema(DEFAULT_SCHEMA, "s").unwrap(),
        )
        .unwrap()
    }

    fn alice() -> Identity {
        Identity {
            name: "alice".into(),
            roles: vec!["analyst".into()],
            team: "red".into(),
            clearance: 2,
        }
    }

    fn model(c: i64) -> ModelAttrs {
        ModelAttrs {
            name: "m".into(),
            classification: c,
            release: "r1".into(),
        }
    }

    fn ctx() -> RequestContext {
        RequestContext::at(1_700_000_000, "127.0.0.1".parse().unwrap(), false, "key")
    }

    #[test]
    fn default_deny_and_explained_permit() {
        let p = pol("");
        assert!(!p.decide(&alice(), "chat", &model(0), &ctx()).allow);
        let p = pol(r#"@id("analysts-chat")
permit(principal in Warden::Role::"analyst", action == Warden::Action::"chat", resource)
when { principal.clearance >= resource.classification && context.source_ip.isLoopback() };"#);
        let d = p.decide(&alice(), "chat", &model(1), &ctx());
        assert!(d.allow, "{d:?}");
        assert_eq!(d.policies, vec!["analysts-chat".to_owned()]);
        assert!(!p.decide(&alice(), "chat", &model(3), &ctx()).allow);
        assert!(!p.decide(&alice(), "embeddings", &model(0), &ctx()).allow);
    }

    #[test]
    fn cached_requests_give_the_same_decisions_as_fresh_ones() {
        let text = r#"permit(principal in Warden::Role::"analyst", action == Warden::Action::"chat", resource)
when { principal.clearance >= resource.classification && context.source_ip.isLoopback() };"#;
        let p = pol(text);
        let remote = RequestContext::at(1_700_000_000, "192.0.2.7".parse().unwrap(), false, "key");
        let mut lowered = alice();
        lowered.clearance = 0;
        // Twice each (the second answer comes from the cache), interleaved.
        for _ in 0..2 {
            assert_eq!(p.allows(&alice(), "chat", &model(1), &ctx()), Ok(true));
            assert_eq!(p.allows(&alice(), "chat", &model(1), &remote), Ok(false));
            assert_eq!(p.allows(&lowered, "chat", &model(1), &ctx()), Ok(false));
            assert_eq!(
                p.allows(&alice(), "embeddings", &model(1), &ctx()),
                Ok(false)
            );
            assert_eq!(p.allows(&alice(), "chat", &model(3), &ctx()), Ok(false));
        }
        // A full cache is emptied, not grown, and answers stay right.
        for i in 0..(PREPARED_MAX + 10) {
            let mut who = alice();
            who.name = format!("u{i}");
            assert_eq!(p.allows(&who, "chat", &model(1), &ctx()), Ok(true));
        }
        assert!(p.prepared.read().unwrap().len() <= PREPARED_MAX);
        assert_eq!(p.allows(&alice(), "chat", &model(1), &remote), Ok(false));
        assert!(p.decide(&alice(), "chat", &model(1), &ctx()).allow);
    }

    #[test]
    fn policies_that_do_not_validate_are_refused() {
        let e = Policies::new(
            "permit(principal, action, resource) when { principal.nosuch == 1 };",
            "bad.cedar",
            parse_schema(DEFAULT_SCHEMA, "s").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("bad.cedar: "), "{e}");
        assert!(
            Policies::new(
                "permit(",
                "x.cedar",
                parse_schema(DEFAULT_SCHEMA, "s").unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn weekday_is_right() {
        // 2023-11-14 22:13:20 UTC was a Tuesday.
        let c = ctx();
        assert_eq!((c.hour, c.weekday), (22, 1));
    }
}
