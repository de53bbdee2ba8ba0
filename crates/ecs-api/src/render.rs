//! Response bodies. Handlers produce one JSON tree in ECS shape (PascalCase, lists already
//! double-wrapped as `{"Disks": {"Disk": [...]}}`); XML is derived from the same tree, where a
//! list becomes repeated elements named after its key.

use crate::auth::Format;
use crate::error::ApiError;
use quick_xml::escape::partial_escape;
use serde_json::{Map, Value, json};

pub const HOST_ID: &str = "ecs.aliyuncs.com";

/// A rendered HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

/// A success body: the handler's object with `RequestId` first.
pub fn success(action: &str, format: Format, request_id: &str, body: Value) -> Rendered {
    let mut obj = Map::new();
    obj.insert("RequestId".into(), Value::String(request_id.into()));
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            obj.insert(k, v);
        }
    }
    let root = format!("{action}Response");
    document(200, format, &root, obj)
}

pub fn error(err: &ApiError, format: Format, request_id: &str) -> Rendered {
    let code = err.code.as_str();
    let body = json!({
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": code,
        "Message": err.message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Ecs&requestId={request_id}"),
    });
    let Value::Object(obj) = body else { unreachable!("json! object literal") };
    document(err.status(), format, "Error", obj)
}

fn document(status: u16, format: Format, root: &str, obj: Map<String, Value>) -> Rendered {
    match format {
        Format::Json => {
            Rendered { status, content_type: "application/json;charset=utf-8", body: Value::Object(obj).to_string() }
        }
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            element(&mut out, root, &Value::Object(obj));
            Rendered { status, content_type: "text/xml;charset=utf-8", body: out }
        }
    }
}

fn element(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Array(items) => {
            for item in items {
                element(out, name, item);
            }
        }
        Value::Object(fields) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in fields {
                element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", partial_escape(s.as_str()))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn xml_double_wraps_lists_and_escapes() {
        let r = success(
            "DescribeDisks",
            Format::Xml,
            "RID",
            json!({"Disks": {"Disk": [{"DiskId": "d-1", "Size": 40}, {"DiskId": "d-<2>"}]}, "TotalCount": 2}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeDisksResponse><RequestId>RID</RequestId><Disks><Disk><DiskId>d-1</DiskId><Size>40</Size></Disk><Disk><DiskId>d-&lt;2&gt;</DiskId></Disk></Disks><TotalCount>2</TotalCount></DescribeDisksResponse>"
        );
    }

    #[test]
    fn json_success_has_request_id_and_no_code() {
        let r = success("ResetDisk", Format::Json, "RID", json!({}));
        assert_eq!(r.body, "{\"RequestId\":\"RID\"}");
    }

    #[test]
    fn error_envelope() {
        let r = error(&ApiError::new(Code::OperationConflict), Format::Json, "RID");
        assert_eq!(r.status, 403);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["Code"], "Operation.Conflict");
        assert_eq!(v["Message"], "The operation may conflicts with others.");
        assert_eq!(v["HostId"], HOST_ID);
        assert_eq!(v["RequestId"], "RID");
        let x = error(&ApiError::new(Code::DryRunOperation), Format::Xml, "RID");
        assert!(x.body.contains("<Error><RequestId>RID</RequestId>"));
        assert_eq!(x.status, 400);
    }
}
