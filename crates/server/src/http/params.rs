//! Query parameters and path parts: parsed strictly, so a typo is an error
//! rather than a silently ignored option.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use steledb::{AllStart, Direction, EventFilter, ExpectedRevision, StreamStart};

use super::ApiError;

/// Events one read returns at most; a larger `limit` is capped to this.
pub const READ_LIMIT_MAX: usize = 1_000;
pub const READ_LIMIT_DEFAULT: usize = 100;
/// Prefixes one filter may hold, and the length of each.
const FILTER_PREFIXES_MAX: usize = 64;
const FILTER_PREFIX_BYTES_MAX: usize = 512;
const FILTER_REGEX_BYTES_MAX: usize = 1_024;
/// The header that can carry the expected revision instead of `?expected=`.
pub const EXPECTED_REVISION_HEADER: &str = "stele-expected-revision";

pub type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The stream named in the path.
pub fn stream_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(stream) = path.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_stream_name",
            format!("invalid stream name in the path: {}", rejection.body_text()),
        )
    })?;
    steledb::check_stream_name(&stream).map_err(|reason| {
        ApiError::bad_request("invalid_stream_name", format!("invalid stream name: {reason}"))
            .with("stream", stream.clone())
    })?;
    Ok(stream)
}

fn invalid(name: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("query parameter '{name}': {message}")).with("parameter", name)
}

/// The query parameters of one request, checked against what the route accepts.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// `allowed` are the names the route accepts; `repeatable` those that may appear more than once.
    pub fn parse(query: RawQuery, allowed: &[&str], repeatable: &[&str]) -> Result<Self, ApiError> {
        let Query(pairs) = query.map_err(|rejection| {
            ApiError::bad_request("invalid_parameter", format!("invalid query string: {}", rejection.body_text()))
        })?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let message = format!("unknown query parameter '{name}'; this route accepts: {}", allowed.join(", "));
                return Err(ApiError::bad_request("invalid_parameter", message).with("parameter", name.as_str()));
            }
            if !repeatable.contains(&name.as_str()) && pairs[..i].iter().any(|(other, _)| other == name) {
                return Err(invalid(name, "given more than once"));
            }
        }
        Ok(Self { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.clone()).collect()
    }

    pub fn direction(&self) -> Result<Direction, ApiError> {
        match self.get("direction") {
            None | Some("forward") => Ok(Direction::Forward),
            Some("backward") => Ok(Direction::Backward),
            Some(other) => Err(invalid("direction", format!("'{other}' is not one of forward, backward"))),
        }
    }

    /// `limit`, defaulting to [`READ_LIMIT_DEFAULT`] and capped at [`READ_LIMIT_MAX`].
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(READ_LIMIT_DEFAULT),
            Some(text) => {
                let limit: u64 =
                    text.parse().map_err(|_| invalid("limit", format!("'{text}' is not a non-negative integer")))?;
                Ok(limit.min(READ_LIMIT_MAX as u64) as usize)
            }
        }
    }

    /// `from` for a stream: `start`, `end` or a revision.
    pub fn stream_start(&self, default: StreamStart) -> Result<StreamStart, ApiError> {
        Ok(match self.start("from")? {
            None => default,
            Some(Anchor::Start) => StreamStart::Start,
            Some(Anchor::End) => StreamStart::End,
            Some(Anchor::At(revision)) => StreamStart::Revision(revision),
        })
    }

    /// `from` for `$all`: `start`, `end` or a position.
    pub fn all_start(&self, default: AllStart) -> Result<AllStart, ApiError> {
        Ok(match self.start("from")? {
            None => default,
            Some(Anchor::Start) => AllStart::Start,
            Some(Anchor::End) => AllStart::End,
            Some(Anchor::At(position)) => AllStart::Position(position),
        })
    }

    fn start(&self, name: &str) -> Result<Option<Anchor>, ApiError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        match text {
            "start" => Ok(Some(Anchor::Start)),
            "end" => Ok(Some(Anchor::End)),
            number => number
                .parse()
                .map(|n| Some(Anchor::At(n)))
                .map_err(|_| invalid(name, format!("'{text}' is not start, end or a non-negative integer"))),
        }
    }

    /// `tombstone=true|false`, default false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(invalid(name, format!("'{other}' is not true or false"))),
        }
    }

    /// The expected revision from `?expected=` or the `Stele-Expected-Revision`
    /// header (they must agree if both are given); `any` when neither is.
    pub fn expected(&self, headers: &HeaderMap) -> Result<ExpectedRevision, ApiError> {
        let from_query =
            self.get("expected").map(|text| parse_expected(text, "query parameter 'expected'")).transpose()?;
        let from_header = match headers.get(EXPECTED_REVISION_HEADER) {
            None => None,
            Some(value) => {
                let text = value.to_str().map_err(|_| {
                    ApiError::bad_request("invalid_parameter", "header Stele-Expected-Revision is not visible ASCII")
                })?;
                Some(parse_expected(text.trim(), "header Stele-Expected-Revision")?)
            }
        };
        match (from_query, from_header) {
            (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("query parameter 'expected' ({a}) and header Stele-Expected-Revision ({b}) disagree"),
            )),
            (Some(expected), _) | (None, Some(expected)) => Ok(expected),
            (None, None) => Ok(ExpectedRevision::Any),
        }
    }

    /// The `$all` filter: at most one kind (`stream_prefix` and `type_prefix`
    /// may repeat; an event matches if it matches any prefix).
    pub fn filter(&self) -> Result<Option<EventFilter>, ApiError> {
        let kinds = ["stream_prefix", "type_prefix", "stream_regex", "type_regex"];
        let given: Vec<&str> = kinds.iter().copied().filter(|kind| self.get(kind).is_some()).collect();
        let kind = match given.as_slice() {
            [] => return Ok(None),
            [kind] => *kind,
            _ => {
                let message = format!("only one filter can be given; got {}", given.join(" and "));
                return Err(ApiError::bad_request("invalid_filter", message));
            }
        };
        let filter_error = |message: String| ApiError::bad_request("invalid_filter", message).with("parameter", kind);
        match kind {
            "stream_prefix" | "type_prefix" => {
                let prefixes = self.all(kind);
                if prefixes.len() > FILTER_PREFIXES_MAX {
                    return Err(filter_error(format!("at most {FILTER_PREFIXES_MAX} prefixes can be given")));
                }
                if prefixes.iter().any(|p| p.len() > FILTER_PREFIX_BYTES_MAX) {
                    return Err(filter_error(format!("a prefix is longer than {FILTER_PREFIX_BYTES_MAX} bytes")));
                }
                Ok(Some(if kind == "stream_prefix" {
                    EventFilter::StreamPrefix(prefixes)
                } else {
                    EventFilter::EventTypePrefix(prefixes)
                }))
            }
            _ => {
                let pattern = self.get(kind).unwrap_or_default();
                if pattern.len() > FILTER_REGEX_BYTES_MAX {
                    return Err(filter_error(format!("the regex is longer than {FILTER_REGEX_BYTES_MAX} bytes")));
                }
                let built = if kind == "stream_regex" {
                    EventFilter::stream_regex(pattern)
                } else {
                    EventFilter::event_type_regex(pattern)
                };
                built.map(Some).map_err(|e| filter_error(format!("invalid regex: {e}")))
            }
        }
    }
}

enum Anchor {
    Start,
    End,
    At(u64),
}

fn parse_expected(text: &str, source: &str) -> Result<ExpectedRevision, ApiError> {
    match text {
        "any" => Ok(ExpectedRevision::Any),
        "no_stream" => Ok(ExpectedRevision::NoStream),
        "stream_exists" => Ok(ExpectedRevision::StreamExists),
        number => number.parse().map(ExpectedRevision::Exact).map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("{source}: '{text}' is not any, no_stream, stream_exists or a revision"),
            )
        }),
    }
}
