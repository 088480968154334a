//! Body: reading a request's body whole, the one read every request makes.

use bytes::Bytes;
use hyper::body::Body;

/// A request's body, whole. Most arrive in one frame with their head, and that frame is the
/// body: no list of frames built and then flattened, as `http_body_util`'s `collect` does.
/// Trailers are not part of it.
pub(super) async fn whole<B: Body<Data = Bytes>>(body: B) -> Result<Bytes, B::Error> {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    // Made only when a second frame comes.
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match (&mut joined, &first) {
            (Some(all), _) => all.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(head)) => {
                let mut all = bytes::BytesMut::with_capacity(head.len() + data.len());
                all.extend_from_slice(head);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
    Ok(match joined {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use hyper::body::Frame;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that yields the given frames, one per poll.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn frames(parts: &[&'static str], trailers: bool) -> Frames {
        let mut f: VecDeque<Frame<Bytes>> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
            .collect();
        if trailers {
            f.push_back(Frame::trailers(HeaderMap::new()));
        }
        Frames(f)
    }

    #[tokio::test]
    async fn a_body_in_any_number_of_frames_is_read_whole() -> Result<(), Box<dyn std::error::Error>>
    {
        let cases: [(&[&'static str], &str); 7] = [
            (&[], ""),
            (&[""], ""),
            (&["{\"a\":1}"], "{\"a\":1}"),
            (&["{\"a\"", ":1}"], "{\"a\":1}"),
            (&["", "{", "", "}"], "{}"),
            (&["{}", ""], "{}"),
            (&["a", "b", "c", "d"], "abcd"),
        ];
        for (parts, whole_text) in cases {
            for trailers in [false, true] {
                let got = whole(frames(parts, trailers)).await?;
                assert_eq!(&got[..], whole_text.as_bytes(), "{parts:?}");
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn the_limit_holds_across_frames() {
        let limited = http_body_util::Limited::new(frames(&["abc", "def"], false), 5);
        let err = whole(limited).await.err();
        assert!(err.is_some_and(|e| e.is::<http_body_util::LengthLimitError>()));
    }
}
