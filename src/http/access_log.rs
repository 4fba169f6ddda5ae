//! The access log: one line per request (target `mcpvisor::http`), written
//! when its response is ready — for a streamed response, when the stream
//! ends: method, path (never the query string, which may carry secrets),
//! status, duration and request id. An open stream holds only its line's
//! few fields, so idle streams stay cheap.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;

use super::guard::RequestId;

/// The access log, as actix-web middleware (outermost: refusals by the
/// guard are logged too).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !tracing::enabled!(target: "mcpvisor::http", tracing::Level::INFO) {
        return next.call(req).await;
    }
    let began = Instant::now();
    let method = req.method().clone();
    let path: Box<str> = req.path().into();
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            let status = e.as_response_error().status_code();
            let line = Line {
                method,
                path,
                status,
                request_id: None,
                began,
            };
            line.write();
            return Err(e);
        }
    };
    let request_id = res
        .request()
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone());
    let line = Line {
        method,
        path,
        status: res.status(),
        request_id,
        began,
    };
    if matches!(res.response().body().size(), BodySize::Stream) {
        Ok(res.map_body(|_, body| {
            BoxBody::new(Logged {
                body,
                line: Some(line),
            })
        }))
    } else {
        line.write();
        Ok(res)
    }
}

/// What one access log line says.
struct Line {
    method: Method,
    path: Box<str>,
    status: StatusCode,
    request_id: Option<Arc<str>>,
    began: Instant,
}

impl Line {
    fn write(&self) {
        let ms = self.began.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "mcpvisor::http",
            request_id = self.request_id.as_deref().unwrap_or("-"),
            "{} {} {} {ms:.3}ms",
            self.method,
            self.path,
            self.status.as_u16(),
        );
    }
}

/// A streamed body that writes its line when it ends (or the client goes).
struct Logged {
    body: BoxBody,
    line: Option<Line>,
}

impl MessageBody for Logged {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            line.write();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, HttpResponse, test, web};
    use std::sync::Mutex;

    /// Log output, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// A sized response is logged at once, a streamed one when its body
    /// is done; bodies pass through whole, and no query string is logged.
    #[actix_web::test]
    async fn each_request_is_logged_once_its_response_is_sent() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(middleware))
                .route(
                    "/sized",
                    web::get().to(|| async { HttpResponse::Ok().body("sized") }),
                )
                .route(
                    "/stream",
                    web::get().to(|| async {
                        let parts =
                            ["a", "b", "c"].map(|s| Ok::<_, actix_web::Error>(Bytes::from(s)));
                        HttpResponse::Ok().streaming(futures::stream::iter(parts))
                    }),
                ),
        )
        .await;

        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/sized?token=s3cret")
                .to_request(),
        )
        .await;
        assert!(log.text().contains("GET /sized 200 "), "{}", log.text());
        assert_eq!(test::read_body(res).await, "sized".as_bytes());

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/stream").to_request()).await;
        assert!(!log.text().contains("/stream"), "logged before its end");
        assert_eq!(test::read_body(res).await, "abc".as_bytes());
        let text = log.text();
        assert!(text.contains("GET /stream 200 "), "{text}");
        assert!(text.contains("request_id=\"-\""), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
