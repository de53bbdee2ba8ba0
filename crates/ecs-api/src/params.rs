//! Request parameters: the query string and a form body, form-decoded and merged, with typed
//! accessors that answer the documented MissingParameter / InvalidParameter errors.

use crate::error::{ApiError, Code};
use std::collections::BTreeMap;

/// Decoded parameters of one request, keyed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Merge the query string and an `application/x-www-form-urlencoded` body. Both are
    /// form-decoded (`+` is a space) because that is how every SDK encodes them; a name that
    /// appears twice is ambiguous for signing and is refused.
    pub fn from_query_and_form(query: &str, form: Option<&[u8]>) -> Result<Params, ApiError> {
        let mut map = BTreeMap::new();
        let sources = [Some(query.as_bytes()), form];
        for src in sources.into_iter().flatten() {
            for (k, v) in form_urlencoded::parse(src) {
                if k.is_empty() {
                    continue;
                }
                if map.insert(k.to_string(), v.to_string()).is_some() {
                    return Err(ApiError::invalid(&k));
                }
            }
        }
        Ok(Params { map })
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Params
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Params { map: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.map.remove(name)
    }

    /// A value that is present and not empty.
    pub fn opt_str(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }

    pub fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name).ok_or_else(|| ApiError::missing(name))
    }

    /// Booleans arrive as `true` (Node) or `True` (Python): compare case-insensitively.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.opt_str(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(name)),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        Ok(self.opt_bool(name)?.unwrap_or(default))
    }

    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.opt_str(name).map(|v| v.trim().parse::<i64>().map_err(|_| ApiError::invalid(name))).transpose()
    }

    /// An integer that must lie in `min..=max`.
    pub fn opt_range(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.opt_i64(name)? {
            Some(v) if v < min || v > max => Err(ApiError::invalid(name)),
            v => Ok(v),
        }
    }

    /// Repeat-list style: `Name.1`, `Name.2`, ... in index order (gaps allowed).
    pub fn repeat_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let prefix = format!("{name}.");
        let mut items: Vec<(u32, String)> = Vec::new();
        for (k, v) in self.map.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            if rest.contains('.') {
                continue;
            }
            let n: u32 = rest.parse().map_err(|_| ApiError::invalid(k))?;
            if !v.is_empty() {
                items.push((n, v.clone()));
            }
        }
        items.sort_by_key(|(n, _)| *n);
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// Repeat-list of structures: `Name.N.Field`; returns one map of fields per N, in order.
    pub fn repeat_struct(&self, name: &str) -> Result<Vec<BTreeMap<String, String>>, ApiError> {
        let prefix = format!("{name}.");
        let mut items: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in self.map.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let n: u32 = n.parse().map_err(|_| ApiError::invalid(k))?;
            items.entry(n).or_default().insert(field.to_string(), v.clone());
        }
        Ok(items.into_values().collect())
    }

    /// JSON-array style (`DiskIds=["d-1","d-2"]`), at most `max` strings. The single-quoted
    /// form Alibaba's CLI guide shows (`['d-1','d-2']`) is accepted too.
    pub fn json_list(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, ApiError> {
        let Some(raw) = self.opt_str(name) else {
            return Ok(None);
        };
        let list: Vec<String> = match serde_json::from_str(&raw) {
            Ok(l) => l,
            Err(_) if raw.trim_start().starts_with('[') && !raw.contains('"') => {
                serde_json::from_str(&raw.replace('\'', "\"")).map_err(|_| ApiError::invalid(name))?
            }
            Err(_) => return Err(ApiError::invalid(name)),
        };
        if list.len() > max {
            return Err(ApiError::invalid(name));
        }
        Ok(Some(list))
    }

    /// `Tag.N.Key` and `Tag.N.Value` by N (1 to [`MAX_TAGS`], else `InvalidTagCount`).
    fn numbered_tags(&self) -> Result<BTreeMap<u32, TagSlot<'_>>, ApiError> {
        let mut numbered: BTreeMap<u32, TagSlot<'_>> = BTreeMap::new();
        for (k, v) in self.map.range("Tag.".to_string()..) {
            let Some(rest) = k.strip_prefix("Tag.") else {
                break;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let n: u32 = n.parse().map_err(|_| ApiError::invalid(k))?;
            if !(1..=MAX_TAGS).contains(&n) {
                return Err(Code::InvalidTagCount.into());
            }
            let slot = numbered.entry(n).or_default();
            match field {
                "Key" => slot.0 = Some(v),
                "Value" => slot.1 = Some(v),
                _ => {}
            }
        }
        Ok(numbered)
    }

    /// `Tag.N.Key` / `Tag.N.Value` pairs, by the documented rules: N from 1 to
    /// [`MAX_TAGS`] (`InvalidTagCount`); a key of 1–128 characters that does not start with
    /// `aliyun` or `acs:` and holds no `http://` or `https://` (`InvalidTagKey.Malformed`);
    /// a value of up to 128 characters without `http://` or `https://`
    /// (`InvalidTagValue.Malformed`); a value needs its key (`InvalidTag.Mismatch`). A key
    /// given twice keeps its last value.
    pub fn tags(&self) -> Result<Vec<(String, String)>, ApiError> {
        let numbered = self.numbered_tags()?;
        let links = |s: &str| s.contains("http://") || s.contains("https://");
        let mut out: Vec<(String, String)> = Vec::new();
        for (key, value) in numbered.into_values() {
            let key = match key {
                Some(k) if !k.is_empty() => k,
                _ if value.is_some_and(|v| !v.is_empty()) => return Err(Code::InvalidTagMismatch.into()),
                _ => continue,
            };
            let lower = key.to_ascii_lowercase();
            if key.chars().count() > 128 || lower.starts_with("aliyun") || lower.starts_with("acs:") || links(key) {
                return Err(Code::InvalidTagKeyMalformed.into());
            }
            let value = value.unwrap_or_default();
            if value.chars().count() > 128 || links(value) {
                return Err(Code::InvalidTagValueMalformed.into());
            }
            out.retain(|(k, _)| k != key);
            out.push((key.to_string(), value.to_string()));
        }
        Ok(out)
    }
}

impl Params {
    /// `Tag.N.Key` / `Tag.N.Value` as a Describe* filter: (key, value) pairs, all of which a
    /// resource must carry; a key without a value (or with an empty one) matches any value.
    /// N runs from 1 to [`MAX_TAGS`] (`InvalidTagCount`).
    pub fn tag_filter(&self) -> Result<Vec<(String, Option<String>)>, ApiError> {
        let mut out = Vec::new();
        for (key, value) in self.numbered_tags()?.into_values() {
            if let Some(k) = key.filter(|k| !k.is_empty()) {
                out.push((k.to_string(), value.filter(|v| !v.is_empty()).map(str::to_string)));
            }
        }
        Ok(out)
    }
}

/// A resource name by ECS's rules (DiskName, and the names that share them): 2 to `max`
/// characters, starting with a letter (any script), then letters, digits, `.`, `_`, `-` or
/// `:`, and not starting with `http://` or `https://`.
pub fn valid_name(s: &str, max: usize) -> bool {
    (2..=max).contains(&s.chars().count())
        && s.chars().next().is_some_and(char::is_alphabetic)
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        && !s.starts_with("http://")
        && !s.starts_with("https://")
}

/// A Description by ECS's rules: 2 to 256 characters, not starting with `http://` or
/// `https://`.
pub fn valid_description(s: &str) -> bool {
    (2..=256).contains(&s.chars().count()) && !s.starts_with("http://") && !s.starts_with("https://")
}

/// `Tag.N`'s key and value as given (either may be missing).
type TagSlot<'a> = (Option<&'a str>, Option<&'a str>);

/// Tags one resource may hold, and the highest N of `Tag.N` (the documented limit).
pub const MAX_TAGS: u32 = 20;

/// Percent-encoding as the ECS signature defines it: RFC 3986 unreserved characters stay,
/// everything else is `%XX` with upper-case hex over UTF-8.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    percent_encode_into(&mut out, s);
    out
}

/// [`percent_encode`], appended to `out`.
pub fn percent_encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
                out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
            }
        }
    }
}

/// Paging as DescribeX accepts it: NextToken/MaxResults (preferred) or PageNumber/PageSize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    Token { next_token: Option<String>, max_results: u32 },
    Pages { number: u32, size: u32 },
}

impl Paging {
    pub fn parse(p: &Params, max_results_cap: i64) -> Result<Paging, ApiError> {
        let token = p.opt_str("NextToken");
        let max = p.opt_range("MaxResults", 1, max_results_cap)?;
        if token.is_some() || max.is_some() {
            return Ok(Paging::Token { next_token: token, max_results: max.unwrap_or(10) as u32 });
        }
        let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
        let size = p.opt_range("PageSize", 1, 100)?.unwrap_or(10) as u32;
        Ok(Paging::Pages { number, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions_follow_the_documented_rules() {
        for ok in ["data-1", "数据盘:v1.0_a-b", "ab", &format!("a{}", "b".repeat(127))] {
            assert!(valid_name(ok, 128), "{ok}");
        }
        for bad in ["http://x", "https://x", "1abc", "_x", "a", "a b", "a*", &format!("a{}", "b".repeat(128))] {
            assert!(!valid_name(bad, 128), "{bad}");
        }
        assert!(valid_description("pop core*(it's) ~ok!"));
        assert!(!valid_description("http://x") && !valid_description("x") && !valid_description(&"d".repeat(257)));
    }

    #[test]
    fn tags_follow_the_documented_rules() {
        let tags = |pairs: &[(&str, &str)]| Params::from_pairs(pairs.iter().copied()).tags();
        let code = |pairs: &[(&str, &str)]| tags(pairs).unwrap_err().code;
        assert_eq!(
            tags(&[("Tag.1.Key", "env"), ("Tag.1.Value", "prod"), ("Tag.2.Key", "env"), ("Tag.2.Value", "ci")])
                .unwrap(),
            vec![("env".to_string(), "ci".to_string())],
            "a key given twice keeps its last value"
        );
        assert_eq!(tags(&[("Tag.20.Key", "k")]).unwrap().len(), 1);
        assert_eq!(code(&[("Tag.21.Key", "k")]), Code::InvalidTagCount);
        assert_eq!(code(&[("Tag.0.Key", "k")]), Code::InvalidTagCount);
        assert_eq!(code(&[("Tag.20000.Key", "k")]), Code::InvalidTagCount);
        for bad in ["aliyun-x", "ACS:x", "a http://x", "see https://y", &"k".repeat(129)] {
            assert_eq!(code(&[("Tag.1.Key", bad)]), Code::InvalidTagKeyMalformed, "{bad}");
        }
        assert_eq!(code(&[("Tag.1.Key", "k"), ("Tag.1.Value", "http://x")]), Code::InvalidTagValueMalformed);
        assert_eq!(code(&[("Tag.1.Key", "k"), ("Tag.1.Value", &"v".repeat(129))]), Code::InvalidTagValueMalformed);
        assert_eq!(code(&[("Tag.1.Value", "v")]), Code::InvalidTagMismatch);
        assert!(tags(&[("Tag.1.Key", "k"), ("Tag.1.Value", &"é".repeat(128))]).is_ok(), "characters, not bytes");
    }

    #[test]
    fn merges_query_and_form_and_decodes_plus() {
        let p = Params::from_query_and_form("A=1&B=x+y", Some(b"C=%2A&D=")).unwrap();
        assert_eq!(p.get("B"), Some("x y"));
        assert_eq!(p.get("C"), Some("*"));
        assert_eq!(p.get("D"), Some(""));
        assert_eq!(p.opt_str("D"), None);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = Params::from_query_and_form("A=1", Some(b"A=2")).unwrap_err();
        assert_eq!(e.code, Code::InvalidParameter);
    }

    #[test]
    fn booleans_are_case_insensitive() {
        let p = Params::from_pairs([("a", "True"), ("b", "false"), ("c", "yes")]);
        assert_eq!(p.opt_bool("a").unwrap(), Some(true));
        assert_eq!(p.opt_bool("b").unwrap(), Some(false));
        assert_eq!(p.opt_bool("c").unwrap_err().message, "The specified parameter \"c\" is not valid.");
    }

    #[test]
    fn repeat_lists_and_structs() {
        let p = Params::from_pairs([
            ("InstanceId.2", "i-b"),
            ("InstanceId.1", "i-a"),
            ("InstanceId.10", "i-c"),
            ("DataDisk.1.Size", "20"),
            ("DataDisk.2.Category", "cloud_essd"),
            ("Tag.1.Key", "k"),
            ("Tag.1.Value", "v"),
        ]);
        assert_eq!(p.repeat_list("InstanceId").unwrap(), vec!["i-a", "i-b", "i-c"]);
        let dd = p.repeat_struct("DataDisk").unwrap();
        assert_eq!(dd.len(), 2);
        assert_eq!(dd[0]["Size"], "20");
        assert_eq!(p.tags().unwrap(), vec![("k".to_string(), "v".to_string())]);
    }

    #[test]
    fn json_lists() {
        let p = Params::from_pairs([("DiskIds", "[\"d-1\",\"d-2\"]"), ("Bad", "[1")]);
        assert_eq!(p.json_list("DiskIds", 100).unwrap().unwrap(), vec!["d-1", "d-2"]);
        assert!(p.json_list("DiskIds", 1).is_err());
        assert!(p.json_list("Bad", 100).is_err());
        assert_eq!(p.json_list("None", 100).unwrap(), None);
        let q = Params::from_pairs([("DiskIds", "['d-1', 'd-2']"), ("Mixed", "['d-1\", \"d-2']"), ("Open", "['d-1'")]);
        assert_eq!(q.json_list("DiskIds", 100).unwrap().unwrap(), vec!["d-1", "d-2"]);
        assert!(q.json_list("Mixed", 100).is_err());
        assert!(q.json_list("Open", 100).is_err());
    }

    #[test]
    fn percent_encoding_matches_the_ecs_rules() {
        assert_eq!(percent_encode("a b*~'()!"), "a%20b%2A~%27%28%29%21");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn paging_prefers_tokens() {
        let p = Params::from_pairs([("NextToken", "t"), ("PageNumber", "3")]);
        assert_eq!(Paging::parse(&p, 500).unwrap(), Paging::Token { next_token: Some("t".into()), max_results: 10 });
        let p = Params::from_pairs([("PageNumber", "2"), ("PageSize", "50")]);
        assert_eq!(Paging::parse(&p, 500).unwrap(), Paging::Pages { number: 2, size: 50 });
        let p = Params::from_pairs([("PageSize", "101")]);
        assert!(Paging::parse(&p, 500).is_err());
    }
}
