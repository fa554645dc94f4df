//! The JSONPath subset `kubectl -o jsonpath=` users write: `{.status.url}`,
//! `{.items[*].metadata.name}`, `{.status.conditions[?(@.type=="Ready")].status}`, plain text
//! between expressions.

use serde_json::Value;

/// Evaluates a template against `root`.
pub fn render(template: &str, root: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed expression in {template:?}"))?
            + start;
        let expr = rest[start + 1..end].trim();
        let values = eval(expr, root)?;
        out.push_str(&values.iter().map(scalar).collect::<Vec<_>>().join(" "));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Evaluates one path (`.a.b[0]`, `[*]`, `[?(@.k=="v")]`) to the values it selects.
pub fn eval(expr: &str, root: &Value) -> Result<Vec<Value>, String> {
    let expr = expr.strip_prefix('$').unwrap_or(expr);
    let mut current = vec![root.clone()];
    let mut rest = expr;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            // A key runs to the next unescaped `.` or `[`; `\.` is a literal dot (`tidal\.dev/port`).
            let bytes = r.as_bytes();
            let mut end = 0;
            while end < bytes.len()
                && bytes[end] != b'['
                && !(bytes[end] == b'.' && (end == 0 || bytes[end - 1] != b'\\'))
            {
                end += 1;
            }
            let key = r[..end].replace("\\.", ".");
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            current = current
                .iter()
                .filter_map(|v| v.get(&key).cloned())
                .collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("unclosed [")?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            current = if inner == "*" {
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect()
            } else if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
            {
                let (path, want) = filter
                    .split_once("==")
                    .ok_or_else(|| format!("unsupported filter {filter:?}"))?;
                let path = path
                    .trim()
                    .strip_prefix('@')
                    .ok_or("filters start with @")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|item| {
                        eval(path, item)
                            .map(|vs| vs.iter().any(|x| scalar(x) == want))
                            .unwrap_or(false)
                    })
                    .collect()
            } else {
                let i: usize = inner
                    .parse()
                    .map_err(|_| format!("unsupported index {inner:?}"))?;
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            };
        } else {
            return Err(format!("unexpected {rest:?} in JSONPath"));
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_expressions_users_write() {
        let isvc = json!({"metadata": {"name": "x"}, "status": {"url": "http://x-default.example.com",
            "conditions": [{"type": "IngressReady", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        assert_eq!(
            render("{.status.url}", &isvc).unwrap(),
            "http://x-default.example.com"
        );
        assert_eq!(
            render("{.status.conditions[?(@.type=='Ready')].status}", &isvc).unwrap(),
            "False"
        );
        assert_eq!(
            render("name={.metadata.name} {.status.conditions[0].type}", &isvc).unwrap(),
            "name=x IngressReady"
        );
        let list = json!({"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]});
        assert_eq!(render("{.items[*].metadata.name}", &list).unwrap(), "a b");
        assert_eq!(render("{.missing}", &list).unwrap(), "");
        let pod = json!({"metadata": {"annotations": {"tidal.dev/port": "4100"}}});
        assert_eq!(
            render("{.metadata.annotations.tidal\\.dev/port}", &pod).unwrap(),
            "4100"
        );
    }
}
