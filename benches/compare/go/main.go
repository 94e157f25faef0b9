// Go reference figures for the README: the same shapes as stackful-compare's
// ping-pong, select-to-select rendezvous and sleepers cases, on goroutines.
// Run: GOMAXPROCS=2 go run . [pp|sel|sleep]
//
// `serve echo|http` runs the echo or HTTP hello server of stackful-compare's
// socket tables (a goroutine per connection, a 4 KiB read buffer) and prints
// its address; drive it with stackful-compare's client:
//
//	go build -o /tmp/goserve . && GOMAXPROCS=2 taskset -c 0 /tmp/goserve serve echo &
//	stackful-compare --net-child ext=ADDR@PID 1000 echo
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"
)

const response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"

// serve answers one connection until the peer closes: the echo, or one
// response per complete request (a request ends with an empty line).
func serve(c net.Conn, http bool) {
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	buf := make([]byte, 4096)
	var pending []byte
	for {
		n, err := c.Read(buf)
		if n == 0 || err != nil {
			return
		}
		if !http {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			continue
		}
		pending = append(pending, buf[:n]...)
		count := 0
		for {
			i := bytes.Index(pending, []byte("\r\n\r\n"))
			if i < 0 {
				break
			}
			pending = pending[i+4:]
			count++
		}
		if count > 0 {
			if _, err := c.Write(responses(count)); err != nil {
				return
			}
		}
	}
}

func responses(count int) []byte {
	out := make([]byte, 0, count*len(response))
	for i := 0; i < count; i++ {
		out = append(out, response...)
	}
	return out
}

func server(http bool) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s@%d\n", l.Addr(), os.Getpid())
	for {
		c, err := l.Accept()
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		go serve(c, http)
	}
}

func median(f func() float64, rounds int) (float64, float64, float64) {
	xs := make([]float64, rounds)
	for i := range xs {
		xs[i] = f()
	}
	sort.Float64s(xs)
	return xs[rounds/2], xs[0], xs[rounds-1]
}

func pingpong(capacity, n int) float64 {
	done := make(chan float64)
	go func() {
		a := make(chan int, capacity)
		b := make(chan int, capacity)
		go func() {
			for v := range a {
				b <- v + 1
			}
			close(b)
		}()
		t := time.Now()
		for i := 0; i < n; i++ {
			a <- i
			<-b
		}
		el := time.Since(t)
		close(a)
		done <- float64(el.Nanoseconds()) / float64(n)
	}()
	return <-done
}

func rdv(sel bool, n int) float64 {
	done := make(chan float64)
	go func() {
		ch := make(chan int)
		quit := make(chan int)
		fin := make(chan int)
		go func() {
			s := 0
			for {
				if sel {
					select {
					case v, ok := <-ch:
						if !ok {
							fin <- s
							return
						}
						s += v
					case <-quit:
						fin <- s
						return
					}
				} else {
					v, ok := <-ch
					if !ok {
						fin <- s
						return
					}
					s += v
				}
			}
		}()
		t := time.Now()
		for i := 0; i < n; i++ {
			if sel {
				select {
				case ch <- i:
				case <-quit:
				}
			} else {
				ch <- i
			}
		}
		close(ch)
		<-fin
		done <- float64(time.Since(t).Nanoseconds()) / float64(n)
	}()
	return <-done
}

func sleepers() float64 {
	t := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 25000; i++ {
		wg.Add(1)
		go func() { time.Sleep(10 * time.Millisecond); wg.Done() }()
	}
	wg.Wait()
	return float64(time.Since(t).Microseconds()) / 1000
}

func main() {
	what := "all"
	if len(os.Args) > 1 {
		what = os.Args[1]
	}
	if what == "serve" {
		server(len(os.Args) > 2 && os.Args[2] == "http")
		return
	}
	if what == "all" || what == "pp" {
		m, lo, hi := median(func() float64 { return pingpong(1024, 50000) }, 9)
		fmt.Printf("go pingpong buffered(1024) ~unbounded: %.0f ns/trip (%.0f-%.0f)\n", m, lo, hi)
		m, lo, hi = median(func() float64 { return pingpong(1, 50000) }, 9)
		fmt.Printf("go pingpong buffered(1): %.0f ns/trip (%.0f-%.0f)\n", m, lo, hi)
		m, lo, hi = median(func() float64 { return pingpong(0, 50000) }, 9)
		fmt.Printf("go pingpong unbuffered: %.0f ns/trip (%.0f-%.0f)\n", m, lo, hi)
	}
	if what == "all" || what == "sel" {
		m, lo, hi := median(func() float64 { return rdv(false, 200000) }, 9)
		fmt.Printf("go plain rendezvous: %.0f ns/msg (%.0f-%.0f)\n", m, lo, hi)
		m2, lo, hi := median(func() float64 { return rdv(true, 200000) }, 9)
		fmt.Printf("go select-to-select rendezvous: %.0f ns/msg (%.0f-%.0f) ratio %.2fx\n", m2, lo, hi, m2/m)
	}
	if what == "all" || what == "sleep" {
		m, lo, hi := median(sleepers, 9)
		fmt.Printf("go sleepers 25000 x 10ms: %.1f ms (%.1f-%.1f)\n", m, lo, hi)
	}
}
